"""Drives `batchline serve` with the official OpenAI Python SDK, unchanged.

Run by tests/serve.rs (the ignored test `the_official_openai_sdk_drives_the_server`)
with OPENAI_BASE_URL pointing at a server started with `--echo --latency-ms 25 --concurrency 2` and
OPENAI_API_KEY set to its key. Every check raises on failure; the last line printed
is `sdk: all checks passed`.
"""

import json
import os
import time

import openai
from openai import OpenAI

client = OpenAI(max_retries=0, timeout=30)


def chat_line(i):
    return json.dumps(
        {
            "custom_id": f"req-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": f"say {i}"}],
            },
        }
    )


def upload(n, name="requests.jsonl"):
    data = ("\n".join(chat_line(i) for i in range(n)) + "\n").encode()
    f = client.files.create(file=(name, data), purpose="batch")
    assert f.object == "file" and f.purpose == "batch", f
    assert f.bytes == len(data) and f.filename == name, f
    return f


def wait(batch_id, until=("completed", "failed", "expired", "cancelled")):
    for _ in range(1200):
        b = client.batches.retrieve(batch_id)
        if b.status in until:
            return b
        time.sleep(0.05)
    raise AssertionError(f"batch {batch_id} stuck in {b.status}")


def expect(exc, fn):
    try:
        fn()
    except exc as e:
        return e
    raise AssertionError(f"expected {exc.__name__}")


# Upload, create, retrieve until completed, download.
f = upload(12)
assert client.files.retrieve(f.id).id == f.id
b = client.batches.create(
    input_file_id=f.id,
    endpoint="/v1/chat/completions",
    completion_window="24h",
    metadata={"run": "sdk"},
)
assert b.status == "validating" and b.metadata == {"run": "sdk"}, b
b = wait(b.id)
assert b.status == "completed", b
assert b.request_counts.total == 12 and b.request_counts.completed == 12, b
assert b.completed_at and b.in_progress_at and b.finalizing_at, b
assert b.error_file_id is None and b.errors is None, b
content = client.files.content(b.output_file_id)
rows = [json.loads(line) for line in content.text.splitlines()]
assert sorted(r["custom_id"] for r in rows) == sorted(f"req-{i}" for i in range(12))
for r in rows:
    i = r["custom_id"].split("-")[1]
    assert r["response"]["status_code"] == 200
    assert r["response"]["body"]["choices"][0]["message"]["content"] == f"say {i}"

# batches.list auto-paging over more than one page, newest first.
small = upload(1, "one.jsonl")
made = [b.id]
for _ in range(4):
    made.append(
        client.batches.create(
            input_file_id=small.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
        ).id
    )
first = client.batches.list(limit=2)
assert len(first.data) == 2 and first.has_more, first
listed = [x.id for x in client.batches.list(limit=2)]
assert listed == list(reversed(made)), (listed, made)

# Cancel a batch midway: partial results, the rest batch_cancelled.
long = upload(400, "long.jsonl")
c = client.batches.create(
    input_file_id=long.id, endpoint="/v1/chat/completions", completion_window="24h"
)
wait(c.id, until=("in_progress", "completed"))
c = client.batches.cancel(c.id)
assert c.status in ("cancelling", "cancelled"), c
c = wait(c.id)
assert c.status == "cancelled" and c.cancelled_at, c
errs = [json.loads(x) for x in client.files.content(c.error_file_id).text.splitlines()]
assert errs and all(e["error"]["code"] == "batch_cancelled" for e in errs), errs[:2]
done = c.request_counts.completed
assert done + len(errs) == 400, (done, len(errs))

# Direct endpoints (the SDK asks embeddings as base64 and decodes them).
chat = client.chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "ping"}]
)
assert chat.choices[0].message.content == "ping", chat
emb = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
assert len(emb.data) == 2 and len(emb.data[0].embedding) == 16, emb
resp = client.responses.create(model="gpt-4o", input="hello there")
assert resp.output_text == "hello there", resp

# Typed errors.
expect(openai.NotFoundError, lambda: client.batches.retrieve("batch_nope"))
expect(openai.NotFoundError, lambda: client.files.retrieve("file-nope"))
bad = OpenAI(api_key="sk-wrong", max_retries=0)
e = expect(openai.AuthenticationError, lambda: bad.files.list())
assert "sk-wrong" not in str(e)
expect(
    openai.BadRequestError,
    lambda: client.files.create(file=("notes.txt", b"{}\n"), purpose="batch"),
)
e = expect(
    openai.BadRequestError,
    lambda: client.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="48h"
    ),
)
assert e.body["param"] == "completion_window", e.body

# files.list and files.delete.
ids = [x.id for x in client.files.list()]
assert f.id in ids and b.output_file_id in ids
d = client.files.delete(f.id)
assert d.deleted and d.id == f.id, d
expect(openai.NotFoundError, lambda: client.files.retrieve(f.id))

print("sdk: all checks passed")
