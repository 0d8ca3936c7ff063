#!/usr/bin/env python3
"""Golden files for Gemma 3's data path (runtime/data/Multimodal.h):
conversations with images through its chat template and processor, against
transformers.

Writes test/goldens/gemma3_data/ (the media are test/goldens/multimodal's,
made by make_multimodal_goldens.py):
  tokenizer.json   the Gemma-style golden tokenizer of test/goldens/tokenizers
                   with Gemma 3's image tokens added (<start_of_image>,
                   <end_of_image>, <image_soft_token>)
  config.json      examples/tiny/gemma3.json with those ids as the image,
                   boi and eoi ids
  model.safetensors  the tiny model's seeded weights (make_goldens' init,
                   transformers 5's checkpoint names)
  samples.jsonl    one conversation: a system prompt, text, wide.jpg, text,
                   small.png, the model's answer, a second turn
  expected.json    its ids, trained flags and token_type_ids as Gemma 3's
                   chat template (content lists: each text trimmed, an
                   image <start_of_image>) and Gemma3Processor (each
                   <start_of_image> -> "\\n\\n" <start_of_image>
                   <image_soft_token> x mm_tokens_per_image <end_of_image>
                   "\\n\\n", then one tokenization) make them, and
                   transformers' loss of the sample under model.safetensors
  pixels.f32       Gemma3ImageProcessorPil's pixel_values: each image resized
                   to 32 x 32 (PIL bilinear), rescaled, normalised by 0.5
  pan.png          an 800 x 300 picture (three crops under pan and scan)
  pan.jsonl        a conversation with it; expected.json's "pan" holds its
                   ids, trained flags, token types and transformers' loss
                   with do_pan_and_scan (pan.f32: the original and its
                   crops' pixel_values), "crops" the crop boxes the
                   processor's pan_and_scan cuts for other sizes

    python3 tools/goldens/make_gemma3_data_golden.py
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_goldens  # noqa: E402

MEDIA = REPO / "test" / "goldens" / "multimodal"
OUT = REPO / "test" / "goldens" / "gemma3_data"
IMAGE_TOKENS = ["<start_of_image>", "<end_of_image>", "<image_soft_token>"]
MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [
        {"type": "text", "text": "Compare "},
        {"type": "image", "image": "../multimodal/wide.jpg"},
        {"type": "text", "text": " with "},
        {"type": "image", "path": "../multimodal/small.png"},
        {"type": "text", "text": " ."}]},
    {"role": "assistant", "content": "They differ."},
    {"role": "user", "content": "Sure?"},
    {"role": "assistant", "content": " Yes. "},
]
# Gemma 3's chat template (its tokenizer_config.json's), which renders
# content lists.
TEMPLATE = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- else -%}"
    "{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}{%- else -%}"
    "{%- set first_user_prefix = \"\" -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}{%- if (message['role'] == 'assistant') -%}{%- set role = \"model\" -%}"
    "{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- elif message['content'] is iterable -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}{%- endfor -%}"
    "{%- endif -%}{{ '<end_of_turn>\n' }}{%- endfor -%}")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    raw = Tokenizer.from_file(str(REPO / "test" / "goldens" / "tokenizers" / "gemma.json"))
    raw.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in IMAGE_TOKENS])
    raw.save(str(OUT / "tokenizer.json"))
    ids = {s: raw.token_to_id(s) for s in IMAGE_TOKENS}
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<bos>", chat_template=TEMPLATE,
        extra_special_tokens={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                              "image_token": "<image_soft_token>"})

    config = json.loads((REPO / "examples" / "tiny" / "gemma3.json").read_text())
    config.update(image_token_index=ids["<image_soft_token>"], boi_token_index=ids["<start_of_image>"],
                  eoi_token_index=ids["<end_of_image>"])
    config["text_config"]["vocab_size"] = 640
    (OUT / "config.json").write_text(json.dumps(config, indent=1))
    size = config["vision_config"]["image_size"]
    per_image = config["mm_tokens_per_image"]

    hf_config = make_goldens.load_json_config(config)
    model = make_goldens.build_model("gemma3", hf_config)
    make_goldens.init_weights(model)
    save_file(make_goldens.checkpoint_weights("gemma3", model), str(OUT / "model.safetensors"),
              metadata={"format": "pt"})

    images = [Image.open(OUT / p.get("image", p.get("path"))).convert("RGB")
              for p in MESSAGES[1]["content"] if p["type"] == "image"]
    processor = transformers.Gemma3Processor(
        image_processor=transformers.Gemma3ImageProcessorPil(size={"height": size, "width": size}),
        tokenizer=tok, image_seq_length=per_image)
    text = tok.apply_chat_template(MESSAGES, tokenize=False)
    out = processor(text=text, images=images, return_tensors="np", add_special_tokens=False)
    input_ids = out["input_ids"][0].tolist()
    types = out["token_type_ids"][0].tolist()
    pixels = out["pixel_values"].astype(np.float32)
    # The same by hand: the processor's expansion, one tokenization; the
    # trained characters are each answer's content and its <end_of_turn>.
    full = "\n\n<start_of_image>" + "<image_soft_token>" * per_image + "<end_of_image>\n\n"
    expanded = text.replace("<start_of_image>", full)
    enc = raw.encode(expanded, add_special_tokens=False)
    assert enc.ids == input_ids, "the processor's ids are its expansion's tokenization"
    spans, at = [], 0
    for m in MESSAGES:
        if m["role"] == "assistant":
            body = "<start_of_turn>model\n" + m["content"].strip()
            at = expanded.index(body, at) + len("<start_of_turn>model\n")
            spans.append((at, at + len(m["content"].strip()) + len("<end_of_turn>")))
    trained = [int(any(a <= s < b for a, b in spans)) for s, _ in enc.offsets]
    assert types == [int(t == ids["<image_soft_token>"]) for t in input_ids]

    labels = torch.tensor([[t if k else -100 for t, k in zip(input_ids, trained)]])
    with torch.no_grad():
        loss = float(model(input_ids=torch.tensor([input_ids]), pixel_values=torch.tensor(pixels),
                           token_type_ids=torch.tensor([types]), labels=labels).loss)
    pixels.tofile(OUT / "pixels.f32")
    with open(OUT / "samples.jsonl", "w") as f:
        f.write(json.dumps({"messages": MESSAGES}, ensure_ascii=False) + "\n")
    expected = {"ids": input_ids, "trained": trained, "token_type_ids": types,
                "images": [list(pixels.shape[1:])] * len(images), "hf_loss": loss}
    expected["pan"] = pan_sample(tok, processor, model, ids)
    expected["crops"] = crop_cases()
    (OUT / "expected.json").write_text(json.dumps(expected))
    print(f"{len(input_ids)} tokens, {len(images)} images {pixels.shape}, transformers' loss {loss:.6f}")


def pan_sample(tok, processor, model, ids):
    """A wide picture under do_pan_and_scan: the original and three crops."""
    y, x = np.mgrid[0:300, 0:800]
    rgb = np.stack([(x * 255) // 799, (y * 255) // 299, ((x // 40 + y // 40) % 2) * 200], -1)
    Image.fromarray(rgb.astype(np.uint8)).save(OUT / "pan.png")
    messages = [{"role": "user", "content": [{"type": "image", "image": "pan.png"},
                                             {"type": "text", "text": " What is it? "}]},
                {"role": "assistant", "content": "Squares on a gradient."}]
    text = tok.apply_chat_template(messages, tokenize=False)
    out = processor(text=text, images=[Image.open(OUT / "pan.png").convert("RGB")], return_tensors="np",
                    add_special_tokens=False, do_pan_and_scan=True)
    input_ids = out["input_ids"][0].tolist()
    types = out["token_type_ids"][0].tolist()
    pixels = out["pixel_values"].astype(np.float32)
    assert pixels.shape[0] == 4, pixels.shape
    # Trained: the answer and its <end_of_turn>, located in the decoded text.
    enc = tok.backend_tokenizer.encode(tok.decode(input_ids), add_special_tokens=False)
    assert enc.ids == input_ids
    answer = "Squares on a gradient.<end_of_turn>"
    at = tok.decode(input_ids).rindex(answer)
    trained = [int(at <= s < at + len(answer)) for s, _ in enc.offsets]
    labels = torch.tensor([[t if k else -100 for t, k in zip(input_ids, trained)]])
    with torch.no_grad():
        loss = float(model(input_ids=torch.tensor([input_ids]), pixel_values=torch.tensor(pixels),
                           token_type_ids=torch.tensor([types]), labels=labels).loss)
    pixels.tofile(OUT / "pan.f32")
    with open(OUT / "pan.jsonl", "w") as f:
        f.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    print(f"pan and scan: {len(input_ids)} tokens, {pixels.shape[0]} images, transformers' loss {loss:.6f}")
    return {"ids": input_ids, "trained": trained, "token_type_ids": types, "hf_loss": loss}


def crop_cases():
    """The processor's pan_and_scan crops (top, left, height, width) of
    images of other sizes, with its defaults (256, 4 crops, ratio 1.2)."""
    p = transformers.Gemma3ImageProcessorPil()
    cases = []
    for h, w in [(300, 800), (800, 300), (256, 300), (300, 520), (512, 511), (1000, 300),
                 (300, 2000), (600, 1000), (400, 470), (700, 256)]:
        image = np.arange(h * w, dtype=np.int64).reshape(1, h, w)
        crops = p.pan_and_scan(image, 256, 4, 1.2)
        boxes = [[int(c[0, 0, 0] // w), int(c[0, 0, 0] % w), int(c.shape[1]), int(c.shape[2])] for c in crops]
        cases.append({"height": h, "width": w, "crops": boxes})
    return cases


if __name__ == "__main__":
    main()
