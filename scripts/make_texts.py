#!/usr/bin/env python3
"""Writes fixtures/tokenizers/texts.jsonl: ~300 varied texts (one JSON string per line)
for golden token counts. Deterministic (seeded); rerun only to change the fixture."""
import json, random, sys

rng = random.Random(20240607)
hand = [
    "", " ", "  ", "\t", "\n", "\n\n\n", "\r\n", " \n ", "a", " a", "a ", " a ", "  a  b  ",
    "Hello, world!", "hello world", "Hello World", "HELLO WORLD", "hello   world", "hello\tworld",
    "hello\nworld", "hello \nworld", "hello\n world", "hello\r\nworld", "line1\n\nline2\n",
    "I'm sure you're right, they've said we'll do it; she'd go, he's not.",
    "I'M SURE YOU'RE RIGHT", "don't DON'T Don't", "it's it’s it‘s", "'s 't 're",
    "0", "7", "42", "123", "1234", "12345678901234567890", "3.14159", "-17", "+1 (555) 010-0199",
    "1,000,000", "v1.2.3", "2024-06-07T12:34:56Z", "0x1F600", "1e-9", "١٢٣٤ ٥٦٧", "①②③", "½ ¼ ¾",
    "naïve café déjà vu", "nai\u0308ve cafe\u0301", "e\u0301", "\u0301", "a\u0301\u0302\u0303\u0304",
    "Z\u0351\u0352\u0353a\u0354\u0355l\u0356g\u0357o", "ﬁne ﬂow ﬃ", "ＡＢＣ ａｂｃ １２３", "㍿ ㌔ ℃ № ™",
    "Straße STRASSE", "ǅemal ǈ ǋ", "ŉ", "İstanbul ı", "Ω Ω", "Å Å", "ẞ",
    "東京は日本の首都です。", "提示 模型 数据", "こんにちは世界", "カタカナ ﾊﾝｶｸ", "안녕하세요 세계",
    "\u1100\u1161\u11a8", "مرحبا بالعالم", "שלום עולם", "Привет, мир!", "Ελληνικά", "हिन्दी \u0958 क़",
    "ภาษาไทย", "Tiếng Việt có dấu", "ქართული", "Հայերեն", "አማርኛ", "𝕳𝖊𝖑𝖑𝖔 𝟙𝟚𝟛",
    "😀", "😀😀😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷🇯🇵", "❤️", "✓ ✗ → ← ⇒", "🚀 launch", "a😀b",
    "\u00a0", "a\u00a0b", "a\u2003b", "a\u2003 b", "a \u2003b", "\u3000全角スペース", "a\u200bb", "\ufeffbom",
    "\u2028\u2029", "tab\there", "a\x0bb\x0cc", "\x1c\x1d\x1e\x1f", "\x00nul", "\x7fdel",
    "back\\slash", "\"dq\" 'sq' “curly” ‘single’", "— – - ‐", "…", "«guillemets»",
    "def f(x):\n    return x * 2\n", "fn main() {\n\tprintln!(\"hi\");\n}", "if (a && b || !c) { x += 1; }",
    "SELECT * FROM t WHERE id = 3;", "<div class=\"x\">hi</div>", "{\"key\": [1, 2, {\"n\": null}]}",
    "https://example.com/path?q=1&r=two#frag", "user@example.com", "C:\\Users\\name\\file.txt",
    "/usr/local/bin//", "a/b/c", "###  Heading\n- item\n* item\n1. item", "| a | b |\n|---|---|",
    "$$\\frac{a}{b}$$", "x^2 + y^2 = z^2", "≤ ≥ ≠ ∞ ∑ ∫",
    "<EOT>", "text <EOT> more", "<META>x<META_END>", "<s> hi </s>", "<unk>",
    "<|endoftext|>", "a<|endoftext|>b", " <|endofprompt|> ", "<|begin_of_text|>Hello",
    "<|im_start|>user\nhi<|im_end|>", "<tool_call>{}</tool_call>", "<|fim_prefix|>x<|fim_suffix|>",
    "<|not_a_token|>", "< EOT >",
    "a" * 200, "ab" * 150, "supercalifragilisticexpialidocious" * 3, "x" * 1000, " " * 50, "\n" * 30,
    "😀" * 40, "東" * 100, "1" * 64, "-" * 80, "=" * 33,
    "word " * 60, " lead", "trail ", "  both  ", "mixed\t \n\t spaces \n",
    "itingful", "thatingness", "the cat sat on the mat", "The Cat Sat On The Mat",
]
words = ("the of and to in is you that it he was for on are as with his they at be this have from "
         "or one had by word but not what all were we when your can said there use an each which she "
         "do how their if will up other about out many then them these so some her would make like "
         "prompt token model batch summarize translate question answer language line\nbreak back\\slash "
         "über straße naïve façade déjà señor Größe 東京 提示 模型 数据 こんにちは 안녕하세요 مرحبا שלום мир "
         "😀 🚀 ✓ — “quoted” ‘single’ \"dq\" tab\there 123 4567 3.5 it's we're I'M don't").split(" ")
seps = [" ", " ", " ", " ", "  ", "\n", " \n", "\t", ", ", ". ", "", "\u00a0", " - "]
gen = []
for i in range(300 - len(hand)):
    n = rng.randint(1, 60)
    parts = []
    for _ in range(n):
        parts.append(rng.choice(words))
        parts.append(rng.choice(seps))
    t = "".join(parts)
    if rng.random() < 0.2:
        t = " " + t
    if rng.random() < 0.5:
        t = t.rstrip()
    gen.append(t)
out = sys.argv[1] if len(sys.argv) > 1 else "fixtures/tokenizers/texts.jsonl"
with open(out, "w", encoding="utf-8") as f:
    for t in hand + gen:
        f.write(json.dumps(t, ensure_ascii=False) + "\n")
print(f"{len(hand) + len(gen)} texts -> {out}", file=sys.stderr)
