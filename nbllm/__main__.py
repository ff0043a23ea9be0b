from nbllm.cli import main

raise SystemExit(main())
