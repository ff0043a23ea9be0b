"""Write a tiny random-weight llama-architecture GGUF that llama.cpp loads, in a blink, offline.

The tests need a real model file for llama.cpp (in-process through ``local``, and behind
``llama_cpp.server``) without downloading one. This one has 2 layers, width 64, and a small
SentencePiece-style vocabulary generated here (control tokens, all 256 byte tokens, letters,
punctuation and a few hundred words), plus a chat template in ``tokenizer.chat_template``.

Random weights give gibberish, so one trick keeps it readable: embedding dimension 0 is a
constant that no layer writes to, and the output projection reads it as a per-token bias that
favours whole words. Generated text is then made of printable words (never stray bytes or
end-of-sequence), so streams are long and non-empty, and generation stops at max_tokens.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

N_EMBD = 64
N_HEAD = 4
N_FF = 128
N_LAYER = 2
CONTEXT = 2048
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
_WORD_TEXT = (
    "the of and to in is was for on that with as by it at from his an were are which this be or has had not "
    "but their one its new after first two who they been have her she he also all time more into other only "
    "over year when can some would about than most where there up out city many later used made so may then "
    "such during while both these them well under between before known long any part since what through same "
    "three people each world several work state high early group water small name film series number war house "
    "music school team family light river book game open road data model cell note paper sky green quiet river "
    "stone cloud north south east west garden window morning evening winter summer market bridge letter story"
)
_WORDS = _WORD_TEXT.split(" ")

# Token types as llama.cpp reads them (gguf.TokenType): normal, unknown, control, byte.
NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and types of the tiny SentencePiece ("llama") vocabulary."""
    tokens, scores, types = ["<unk>", "<s>", "</s>"], [0.0, 0.0, 0.0], [UNKNOWN, CONTROL, CONTROL]
    for byte in range(256):
        tokens.append(f"<0x{byte:02X}>")
        scores.append(0.0)
        types.append(BYTE)
    pieces = ["\u2581"] + [chr(c) for c in range(33, 127)]
    pieces += [f"\u2581{chr(c)}" for c in range(ord("a"), ord("z") + 1)]
    pieces += [f"\u2581{w}" for w in dict.fromkeys(_WORDS)] + [w for w in dict.fromkeys(_WORDS) if len(w) > 2]
    for piece in dict.fromkeys(pieces):
        tokens.append(piece)
        scores.append(-float(len(tokens)) if len(piece) < 3 else float(len(piece)))  # longer pieces merge first
        types.append(NORMAL)
    return tokens, scores, types


def _tensors(n_vocab: int, bias: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)

    def rand(*shape: int, scale: float = 0.1) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    embd = rand(n_vocab, N_EMBD)
    embd[:, 0] = 4.0  # the constant "bias" dimension
    out = rand(n_vocab, N_EMBD, scale=0.5)
    out[:, 0] = bias
    tensors = {"token_embd.weight": embd, "output_norm.weight": np.ones(N_EMBD, np.float32), "output.weight": out}
    for layer in range(N_LAYER):
        attn_out, ffn_down = rand(N_EMBD, N_EMBD), rand(N_EMBD, N_FF)
        attn_out[0, :] = 0.0  # nothing writes to dimension 0 ...
        ffn_down[0, :] = 0.0  # ... so it stays constant through the residual stream
        tensors |= {
            f"blk.{layer}.attn_norm.weight": np.ones(N_EMBD, np.float32),
            f"blk.{layer}.attn_q.weight": rand(N_EMBD, N_EMBD),
            f"blk.{layer}.attn_k.weight": rand(N_EMBD, N_EMBD),
            f"blk.{layer}.attn_v.weight": rand(N_EMBD, N_EMBD),
            f"blk.{layer}.attn_output.weight": attn_out,
            f"blk.{layer}.ffn_norm.weight": np.ones(N_EMBD, np.float32),
            f"blk.{layer}.ffn_gate.weight": rand(N_FF, N_EMBD),
            f"blk.{layer}.ffn_up.weight": rand(N_FF, N_EMBD),
            f"blk.{layer}.ffn_down.weight": ffn_down,
        }
    return tensors


def write_tiny_gguf(path: Path, seed: int = 0) -> Path:
    """Write the model to ``path`` (about 0.5 MB) and return the path."""
    import gguf

    tokens, scores, types = vocabulary()
    # Whole words first, other printable pieces rarely, control and byte tokens never.
    bias = np.array([1.0 if k == NORMAL and t.startswith("\u2581") and len(t) > 2 else 0.2 if k == NORMAL else -1.5
                     for t, k in zip(tokens, types, strict=True)], dtype=np.float32)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("nbllm-tiny-random")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)
    for name, array in _tensors(len(tokens), bias, seed).items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def shared_tiny_gguf(directory: Path) -> Path:
    """The model in ``directory``, written on first use (test modules share one file per session)."""
    path = directory / "nbllm-tiny.gguf"
    if not path.exists():
        partial = write_tiny_gguf(directory / f"nbllm-tiny.{id(path)}.part")
        partial.replace(path)
    return path


if __name__ == "__main__":  # python -m tests.tiny_gguf OUT.gguf
    print(write_tiny_gguf(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny.gguf")))
