"""Write the tiny random-weight DeepSeek-R1 (pipelines/tiny.py) as a GGUF file that llama.cpp loads.

It does what llama.cpp's ``convert_hf_to_gguf.py`` does for a ``Qwen2ForCausalLM``, with the ``gguf`` package
only: qwen2 hyper-parameters, the byte-level BPE vocabulary as a ``gpt2`` tokenizer (padded to the embedding
rows with unused tokens), its merges, special tokens and R1 chat template, and every tensor under its GGUF
name in float32 (the model is tiny; no quantization is needed to test a server).
"""

from __future__ import annotations

import json
from pathlib import Path


def write_tiny_r1_gguf(model_dir: Path, dest: Path) -> Path:
    """Convert the tiny R1 folder `model_dir` (Hugging Face format) into the GGUF file `dest`."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    if dest.exists():
        return dest
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tok_config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    arch = gguf.MODEL_ARCH.QWEN2
    blocks = int(config["num_hidden_layers"])
    tmp = dest.with_name(dest.name + ".part")
    writer = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_name("atelier-tiny-r1")
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_block_count(blocks)
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_head_count_kv(int(config["num_key_value_heads"]))
    writer.add_rope_freq_base(float(config.get("rope_theta") or (config.get("rope_parameters") or {}).get(
        "rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    # Vocabulary: ids in order, added tokens typed as convert_hf_to_gguf types them, padding rows unused.
    vocab: dict[str, int] = dict(tokenizer["model"]["vocab"])
    added = {t["content"]: t for t in tokenizer.get("added_tokens", [])}
    for content, token in added.items():
        vocab[content] = int(token["id"])
    by_id = {i: t for t, i in vocab.items()}
    rows = int(config["vocab_size"])
    tokens: list[str] = []
    types: list[int] = []
    for i in range(rows):
        token = by_id.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif token in added:
            tokens.append(token)
            types.append(gguf.TokenType.CONTROL if added[token].get("special") else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(token)
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    # The tiny BPE splits like Qwen2's pre-tokenizer would for the ASCII text the tests send.
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    merges = tokenizer["model"].get("merges") or []
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    writer.add_bos_token_id(vocab[tok_config["bos_token"]])
    writer.add_eos_token_id(vocab[tok_config["eos_token"]])
    writer.add_pad_token_id(vocab[tok_config.get("pad_token") or tok_config["eos_token"]])
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    template_file = model_dir / "chat_template.jinja"
    template = template_file.read_text(encoding="utf-8") if template_file.exists() else tok_config["chat_template"]
    writer.add_chat_template(template)

    # Tensors: Hugging Face names mapped to llama.cpp's by gguf's own table.
    names = gguf.get_tensor_name_map(arch, blocks)
    for hf_name, array in sorted(load_file(str(model_dir / "model.safetensors")).items()):
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ValueError(f"no GGUF name for tensor {hf_name}")
        writer.add_tensor(name, np.ascontiguousarray(array, dtype=np.float32))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(dest)
    return dest
