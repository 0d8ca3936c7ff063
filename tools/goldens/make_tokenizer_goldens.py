#!/usr/bin/env python3
"""Golden files for veomni's tokenizer (runtime/data/Tokenizer.h) against
Hugging Face `tokenizers` (PyPI; only to make these files).

For each style it trains a small byte-level BPE as the real models' files
are made, saves tokenizer.json, and encodes every paragraph of
test/goldens/tokenizers/corpus.txt (mixed scripts, whitespace runs,
digits, emoji, combining accents, special tokens) into <style>.ids: one
line of space-separated ids per paragraph.

  qwen2   Qwen2/2.5/3: NFC, Qwen2's Split regex, ByteLevel without regex,
          <|endoftext|>, <|im_start|>, <|im_end|> added
  llama3  Llama 3: no normalizer, Llama 3's Split regex,
          <|begin_of_text|>, <|eot_id|>, <|start_header_id|>,
          <|end_header_id|> added
  gemma   Gemma's chat tokens on the Llama 3 style: <bos>,
          <start_of_turn>, <end_of_turn> added
  deepseek  DeepSeek-V3's chat tokens on the Llama 3 style:
          <｜begin▁of▁sentence｜>, <｜end▁of▁sentence｜>, <｜User｜>,
          <｜Assistant｜> added
  harmony gpt-oss's: <|start|>, <|message|>, <|end|>, <|channel|>,
          <|return|> added; its template's date fixed to HARMONY_DATE, and
          harmony.think: one more conversation (harmony_think.json) whose
          answers have thinking (the analysis channel)

It also renders the conversations of chat.json with each style's chat
template through transformers' apply_chat_template (ChatML for qwen2; the
Llama 3 instruct template for llama3; Gemma 3's for gemma; DeepSeek-V3's
for deepseek, its user, assistant and system part) into
<style>.chat: per conversation
a line of ids and a line of labels, the label being the id where the
token's characters lie in an assistant's content or its end-of-turn token
(found by the tokenizer's offsets), else -100.

And two SentencePiece models (`sentencepiece` on PyPI), a unigram and a
BPE one trained on the same text, with the ids of the corpus in
sp_unigram.ids and sp_bpe.ids.

    python3 tools/goldens/make_tokenizer_goldens.py [STYLE ...]

(With styles named, only theirs are written and SentencePiece's are not.)
"""
import json
import os

from tokenizers import (Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, trainers)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "test", "goldens", "tokenizers")

QWEN2 = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
         r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
LLAMA3 = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|"""
          r"""\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")

TRAIN = """The quick brown fox jumps over the lazy dog. Pack my box with five
dozen liquor jugs! How vexingly quick daft zebras jump; 1234567890 and
3.14159 are numbers. Ünïcödé, naïve café, résumé — «quotes» and ‘marks’.
日本語のテキストと中文文本，还有한국어 문장. Привет, мир! Γειά σου κόσμε.
Emoji 🙂🚀👍🏽 and symbols ∑∫√∞ ≠ ≤ ≥. Tabs\tand   spaces   and
newlines\n\n  indented code: for (int i = 0; i < n; ++i) { x += y; }
I'm, you're, they've, we'll, she'd, it's, DON'T, I'LL.
"""


def corpus():
    # newline="": CRLF stays as written.
    with open(os.path.join(OUT, "corpus.txt"), encoding="utf-8",
              newline="") as f:
        return [p for p in f.read().split("\n\n") if p.strip()]


def train(pattern, nfc, specials):
    tok = Tokenizer(models.BPE())
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([TRAIN] * 20, trainer)
    return tok


CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + "
          "'\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}")
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}")


# Gemma 3's template (its text parts): a system prompt prefixes the first
# user turn, the assistant is "model", contents are trimmed, turns alternate.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}{%- else -%}"
    "{%- set first_user_prefix = \"\" -%}{%- set loop_messages = messages -%}"
    "{%- endif -%}{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}{%- if (message['role'] == 'assistant') -%}{%- set role = \"model\" -%}"
    "{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}{%- endfor -%}")


# DeepSeek-V3's chat template (its tokenizer_config.json's) without the
# tool-call branches: every system prompt joined up front, contents as
# they are.
DEEPSEEK_TEMPLATE = (
    "{% set ns = namespace(system_prompt='', is_first_sp=true) %}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content'] %}"
    "{% set ns.is_first_sp = false %}{%- else %}"
    "{% set ns.system_prompt = ns.system_prompt + '\n\n' + message['content'] %}{%- endif %}"
    "{%- endif %}{%- endfor %}{{ bos_token }}{{ ns.system_prompt }}"
    "{%- for message in messages %}{%- if message['role'] == 'user' %}"
    "{{'<｜User｜>' + message['content']}}{%- endif %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{'<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- endif %}"
    "{%- endfor -%}")


# gpt-oss's chat template (its chat_template.jinja) without tools, its
# strftime_now date fixed: the system message, a first system message as the
# developer's instructions, the last answer with its thinking and <|return|>.
HARMONY_DATE = "2025-08-05"
HARMONY_TEMPLATE = (
    "{{- '<|start|>system<|message|>' }}"
    "{{- 'You are ChatGPT, a large language model trained by OpenAI.\n' }}"
    "{{- 'Knowledge cutoff: 2024-06\n' }}"
    "{{- 'Current date: " + HARMONY_DATE + "\n\n' }}"
    "{{- 'Reasoning: medium\n\n' }}"
    "{{- '# Valid channels: analysis, commentary, final. Channel must be included for every message.' }}"
    "{{- '<|end|>' }}"
    "{%- if messages[0].role == 'developer' or messages[0].role == 'system' %}"
    "{%- set developer_message = messages[0].content %}{%- set loop_messages = messages[1:] %}"
    "{%- else %}{%- set developer_message = '' %}{%- set loop_messages = messages %}{%- endif %}"
    "{%- if developer_message %}{{- '<|start|>developer<|message|>' }}"
    "{{- '# Instructions\n\n' }}{{- developer_message }}{{- '\n\n' }}{{- '<|end|>' }}{%- endif %}"
    "{%- for message in loop_messages -%}"
    "{%- if message.role == 'assistant' -%}"
    "{%- if loop.last -%}"
    "{%- if 'thinking' in message %}"
    "{{- '<|start|>assistant<|channel|>analysis<|message|>' + message.thinking + '<|end|>' }}"
    "{%- endif %}"
    "{{- '<|start|>assistant<|channel|>final<|message|>' + message.content + '<|return|>' }}"
    "{%- else %}"
    "{{- '<|start|>assistant<|channel|>final<|message|>' + message.content + '<|end|>' }}"
    "{%- endif %}"
    "{%- elif message.role == 'user' -%}"
    "{{- '<|start|>user<|message|>' + message.content + '<|end|>' }}"
    "{%- endif -%}{%- endfor -%}")
HARMONY_THINKING = [
    {"role": "user", "content": "What is 3 * 7?"},
    {"role": "assistant", "content": "21", "thinking": "dropped, not the last"},
    {"role": "user", "content": "And 3 * 8?"},
    {"role": "assistant", "content": "24.", "thinking": "3 * 8 = 24, so 24."},
]


def trained_spans(name, messages):
    """Character spans of the rendered text that are trained: an assistant
    turn's content and its end-of-turn token."""
    text, spans = "", []
    if name == "llama3":
        text = "<|begin_of_text|>"
    if name == "harmony":
        text = ("<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
                "Knowledge cutoff: 2024-06\nCurrent date: " + HARMONY_DATE + "\n\nReasoning: medium\n\n"
                "# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>")
        if messages[0]["role"] == "system":
            if messages[0]["content"]:
                text += "<|start|>developer<|message|># Instructions\n\n" + messages[0]["content"] + "\n\n<|end|>"
            messages = messages[1:]
        for i, m in enumerate(messages):
            if m["role"] == "user":
                text += "<|start|>user<|message|>" + m["content"] + "<|end|>"
                continue
            last = i + 1 == len(messages)
            if last and "thinking" in m:
                text += "<|start|>assistant<|channel|>analysis<|message|>"
                spans.append((len(text), len(text) + len(m["thinking"]) + len("<|end|>")))
                text += m["thinking"] + "<|end|>"
            text += "<|start|>assistant<|channel|>final<|message|>"
            end = "<|return|>" if last else "<|end|>"
            spans.append((len(text), len(text) + len(m["content"]) + len(end)))
            text += m["content"] + end
        return text, spans
    if name == "deepseek":
        system = [m["content"] for m in messages if m["role"] == "system"]
        text = "<｜begin▁of▁sentence｜>" + "\n\n".join(system)
        for m in messages:
            if m["role"] == "user":
                text += "<｜User｜>" + m["content"]
            elif m["role"] == "assistant":
                text += "<｜Assistant｜>"
                end = "<｜end▁of▁sentence｜>"
                spans.append((len(text), len(text) + len(m["content"]) + len(end)))
                text += m["content"] + end
        return text, spans
    if name == "gemma":
        text, prefix = "<bos>", ""
        if messages[0]["role"] == "system":
            prefix, messages = messages[0]["content"] + "\n\n", messages[1:]
        for i, m in enumerate(messages):
            role = "model" if m["role"] == "assistant" else m["role"]
            text += "<start_of_turn>" + role + "\n" + (prefix if i == 0 else "")
            body = m["content"].strip()
            if m["role"] == "assistant":
                spans.append((len(text), len(text) + len(body) + len("<end_of_turn>")))
            text += body + "<end_of_turn>\n"
        return text, spans
    for m in messages:
        if name == "qwen2":
            text += "<|im_start|>" + m["role"] + "\n"
            body, end, after = m["content"], "<|im_end|>", "\n"
        else:
            text += "<|start_header_id|>" + m["role"] + "<|end_header_id|>\n\n"
            body, end, after = m["content"].strip(), "<|eot_id|>", ""
        if m["role"] == "assistant":
            spans.append((len(text), len(text) + len(body) + len(end)))
        text += body + end + after
    return text, spans


def write_chat(name, tok):
    from transformers import PreTrainedTokenizerFast
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token={"llama3": "<|begin_of_text|>", "gemma": "<bos>",
                   "deepseek": "<｜begin▁of▁sentence｜>"}.get(name),
        chat_template={"qwen2": CHATML, "gemma": GEMMA_TEMPLATE,
                       "deepseek": DEEPSEEK_TEMPLATE,
                       "harmony": HARMONY_TEMPLATE}.get(name, LLAMA3_TEMPLATE))
    with open(os.path.join(OUT, "chat.json"), encoding="utf-8") as f:
        chats = json.load(f)
    files = [(f"{name}.chat", chats)]
    if name == "harmony":
        files.append(("harmony.think", [HARMONY_THINKING]))
        with open(os.path.join(OUT, "harmony_think.json"), "w", encoding="utf-8") as f:
            json.dump([HARMONY_THINKING], f, ensure_ascii=False, indent=1)
    for file, convs in files:
        write_conversations(fast, name, file, convs)


def write_conversations(fast, name, file, chats):
    with open(os.path.join(OUT, file), "w") as f:
        for messages in chats:
            rendered = fast.apply_chat_template(messages, tokenize=False)
            text, spans = trained_spans(name, messages)
            assert rendered == text, (rendered, text)
            enc = fast(rendered, add_special_tokens=False,
                       return_offsets_mapping=True)
            ids = enc["input_ids"]
            labels = [i if any(a <= s < b for a, b in spans) else -100
                      for i, (s, e) in zip(ids, enc["offset_mapping"])]
            f.write(" ".join(map(str, ids)) + "\n")
            f.write(" ".join(map(str, labels)) + "\n")


def main(only=()):
    styles = {
        "qwen2": (QWEN2, True, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]),
        "llama3": (LLAMA3, False, ["<|begin_of_text|>", "<|eot_id|>",
                                   "<|start_header_id|>",
                                   "<|end_header_id|>"]),
        "gemma": (LLAMA3, False, ["<bos>", "<start_of_turn>", "<end_of_turn>"]),
        "deepseek": (LLAMA3, False, ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
                                     "<｜User｜>", "<｜Assistant｜>"]),
        "harmony": (LLAMA3, False, ["<|start|>", "<|message|>", "<|end|>", "<|channel|>",
                                    "<|return|>"]),
    }
    paragraphs = corpus()
    for name, (pattern, nfc, specials) in styles.items():
        if only and name not in only:
            continue
        tok = train(pattern, nfc, specials)
        tok.save(os.path.join(OUT, f"{name}.json"))
        with open(os.path.join(OUT, f"{name}.ids"), "w") as f:
            for p in paragraphs:
                f.write(" ".join(map(str, tok.encode(p).ids)) + "\n")
        print(name, len(paragraphs), "paragraphs")
        write_chat(name, tok)


def sentencepiece_goldens():
    import io

    import sentencepiece as spm
    paragraphs = corpus()
    for kind in ("unigram", "bpe"):
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(TRAIN.splitlines() * 20),
            model_writer=model, vocab_size=400, model_type=kind,
            character_coverage=1.0, byte_fallback=True,
            minloglevel=2)
        path = os.path.join(OUT, f"sp_{kind}.model")
        with open(path, "wb") as f:
            f.write(model.getvalue())
        sp = spm.SentencePieceProcessor(model_file=path)
        with open(os.path.join(OUT, f"sp_{kind}.ids"), "w") as f:
            for p in paragraphs:
                f.write(" ".join(map(str, sp.encode(p))) + "\n")
        print(f"sp_{kind}", len(paragraphs), "paragraphs")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
    if len(sys.argv) == 1:
        sentencepiece_goldens()
