"""Prompting whole tables: templated rows, a shared rate limiter, bounded concurrency, ordered results.

The public calls are ``nbllm.map``, ``nbllm.imap``, ``nbllm.embed`` (and ``%%llm --over``); this
package holds their parts. Nothing here is imported by ``import nbllm`` or ``%load_ext nbllm``.
"""
