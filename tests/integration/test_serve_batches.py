"""The Batch API through the real `openai` client, against `python -m rayjobs.serve_batches` on
127.0.0.1 (a subprocess this module starts, stops, kills and restarts), each batch a real
rayjobs job on a local Ray: a tiny chat LM and the packaged MiniLM."""

import base64
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from tests.integration.ports import free_port
from tests.integration.reference import sentence_transformer_vectors
from tests.operators.text.test_output_grammar import SCHEMA
from tests.operators.text.test_text_generator import direct_greedy

openai = pytest.importorskip("openai")
pytestmark = [pytest.mark.integration, pytest.mark.timeout(480)]
REPO = Path(__file__).resolve().parents[2]
KEYS = ("alice-key", "bob-key")
SLOW = [  # an embedder that sleeps 1 s per 4 rows: time to cancel or kill a batch part-way
    "model._target_=tests.integration.faulty_operators.SlowTextEmbedder",
    "+model.seconds_per_batch=1.0",
    "model.batch_size=4",
]


class Service:
    """python -m rayjobs.serve_batches over one storage folder, started and stopped by the tests."""

    def __init__(self, storage: Path, models: dict[str, str], tiny_bert: str) -> None:
        self.storage, self.port = storage, free_port()
        self.args = [
            sys.executable,
            "-m",
            "rayjobs.serve_batches",
            f"storage.path={storage}",
            f"http.port={self.port}",
            f"api_keys=[{','.join(KEYS)}]",
            f"+models.tiny-chat.path={models['chat']}",
            f"+models.slow-embed.path={tiny_bert}",
            "+models.slow-embed.overrides=[" + ",".join(f"'{item}'" for item in SLOW) + "]",
            "jobs.shard_rows=4",
            "limits.max_upload_mb=1",
            "limits.max_requests_per_file=500",
        ]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ADDRESS": ""}
        self.log = open(self.storage.parent / f"service-{time.monotonic_ns()}.log", "wb")
        self.proc = subprocess.Popen(self.args, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                raw_get(f"{self.url}/files")
                return
            except OSError:
                assert self.proc.poll() is None, Path(self.log.name).read_text()[-3000:]
                time.sleep(0.3)
        raise TimeoutError("serve_batches did not come up in 60 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def client(self, key: str = KEYS[0]):
        return openai.OpenAI(base_url=self.url, api_key=key, max_retries=0, timeout=30)

    def batch_state(self, batch_id: str) -> dict:
        """The service's own record of a batch (the job's pid), read from storage."""
        return json.loads((self.storage / "batches" / batch_id / "batch.json").read_text())


@pytest.fixture(scope="module")
def service(tmp_path_factory, tiny_gpt2, tiny_bert):
    root = tmp_path_factory.mktemp("batches")
    running = Service(root / "state", {"chat": tiny_gpt2}, tiny_bert)
    running.start()
    yield running
    running.stop()
    for folder in (root / "state" / "batches").glob("*"):  # jobs outlive the service by design
        state = json.loads((folder / "batch.json").read_text())
        pid = (state.get("_job") or {}).get("pid")
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def raw_get(url: str, headers: dict | None = None) -> tuple[int, str]:
    """(status, body) of a GET sent as written: no client normalising `..` or `%2F` away."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as answer:
            return answer.status, answer.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def upload(client, lines: list, name: str = "in.jsonl"):
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    return client.files.create(file=(name, io.BytesIO(text.encode())), purpose="batch")


def chat_line(i: int, model: str = "tiny-chat", tokens: int = 5) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": f"a red car {i}"}], "max_tokens": tokens}
    return {"custom_id": f"chat-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}


def embed_line(i: int, model: str = "all-minilm-l6-v2", **extra) -> dict:
    body = {"model": model, "input": f"a photo of a dog number {i}", **extra}
    return {"custom_id": f"emb-{i}", "method": "POST", "url": "/v1/embeddings", "body": body}


def wait(client, batch_id: str, until, seconds: float = 240):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if until(batch):
            return batch
        assert batch.status != "failed", batch.errors
        time.sleep(0.5)
    raise TimeoutError(f"batch {batch_id} still {batch.status} after {seconds:.0f} s")


def lines_of(client, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines() if line.strip()]


def test_keys_are_required_and_see_only_their_own(service):
    alice, bob = service.client(KEYS[0]), service.client(KEYS[1])
    with pytest.raises(openai.AuthenticationError):
        service.client("wrong-key").files.list()
    assert raw_get(f"{service.url}/batches")[0] == 401  # no key at all
    mine = upload(alice, [chat_line(0)])
    assert mine.purpose == "batch" and mine.bytes > 0 and mine.id.startswith("file-")
    assert mine.id in [f.id for f in alice.files.list()] and bob.files.list().data == []
    with pytest.raises(openai.NotFoundError):
        bob.files.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        bob.files.content(mine.id)
    with pytest.raises(openai.NotFoundError):
        bob.batches.create(input_file_id=mine.id, endpoint="/v1/chat/completions", completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        bob.files.delete(mine.id)
    assert alice.files.retrieve(mine.id).id == mine.id  # bob's delete did nothing
    with pytest.raises(openai.BadRequestError):
        alice.batches.create(input_file_id=mine.id, endpoint="/v1/completions", completion_window="24h")
    with pytest.raises(openai.APIStatusError) as too_big:
        alice.files.create(file=("big.jsonl", io.BytesIO(b"x" * (3 << 20))), purpose="batch")
    assert too_big.value.status_code == 413
    headers = {"Authorization": f"Bearer {KEYS[0]}"}
    for probe in (
        "files/..%2F..%2Fetc%2Fpasswd",
        "files/%2e%2e/content",
        "batches/..%2Fbatch.json",
        "files/..%2Fstate",
    ):
        status, text = raw_get(f"{service.url}/{probe}", headers)
        assert status in (400, 404), (probe, status)
        assert "root:" not in text
    assert alice.files.delete(mine.id).deleted and mine.id not in [f.id for f in alice.files.list()]


def test_a_file_with_invalid_lines_fails_naming_them(service):
    client = service.client()
    lines = [chat_line(0), "{not json", chat_line(2), {**chat_line(3), "url": "/v1/embeddings"}, chat_line(0)]
    batch = client.batches.create(
        input_file_id=upload(client, lines).id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.status == "validating" and batch.request_counts.total == 0
    deadline = time.monotonic() + 30
    while (
        failed := client.batches.retrieve(batch.id)
    ).status == "validating" and time.monotonic() < deadline:
        time.sleep(0.3)
    assert failed.status == "failed" and failed.failed_at and failed.output_file_id is None
    assert [(e.line, e.code) for e in failed.errors.data] == [
        (2, "invalid_request"),
        (4, "invalid_request"),
        (5, "invalid_request"),
    ]
    assert "appears more than once" in failed.errors.data[2].message


def test_chat_and_embedding_batches_every_custom_id_once(service, tiny_gpt2, minilm_path):
    from openai.types import CreateEmbeddingResponse
    from openai.types.chat import ChatCompletion

    client = service.client()
    chats = [chat_line(i) for i in range(10)] + [chat_line(10, model="no-such-model")]
    structured = chat_line(11, tokens=90)  # structured outputs, as the openai client sends them
    structured["body"]["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": SCHEMA, "strict": True},
    }
    chats.append(structured)
    embeds = [embed_line(i, encoding_format="base64" if i % 2 else "float") for i in range(6)]
    chat_batch = client.batches.create(
        input_file_id=upload(client, chats).id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"team": "search"},
    )
    embed_batch = client.batches.create(
        input_file_id=upload(client, embeds).id, endpoint="/v1/embeddings", completion_window="24h"
    )
    listed = [b.id for b in client.batches.list(limit=2).data]
    assert listed == [embed_batch.id, chat_batch.id]  # newest first
    done = wait(client, chat_batch.id, lambda b: b.status == "completed")
    assert done.model == "tiny-chat" and done.metadata == {"team": "search"}
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (
        12,
        11,
        1,
    )
    assert done.in_progress_at <= done.finalizing_at <= done.completed_at
    output, errors = lines_of(client, done.output_file_id), lines_of(client, done.error_file_id)
    assert sorted(line["custom_id"] for line in output + errors) == sorted(
        line["custom_id"] for line in chats
    )
    assert [e["custom_id"] for e in errors] == ["chat-10"] and errors[0]["error"]["code"] == "model_not_found"
    by_id = {line["custom_id"]: ChatCompletion.model_validate(line["response"]["body"]) for line in output}
    for i in (0, 7):
        assert by_id[f"chat-{i}"].choices[0].message.content == direct_greedy(tiny_gpt2, f"a red car {i}", 5)
    jsonschema.validate(json.loads(by_id["chat-11"].choices[0].message.content), SCHEMA)
    assert done.usage.output_tokens == sum(c.usage.completion_tokens for c in by_id.values()) > 0
    assert done.usage.input_tokens == sum(c.usage.prompt_tokens for c in by_id.values()) > 0
    assert done.usage.cpu_s > 0 and done.usage.gpu_s == 0  # what the job reserved, from its run record

    embedded = wait(client, embed_batch.id, lambda b: b.status == "completed")
    assert embedded.request_counts.completed == 6 and embedded.error_file_id is None
    responses = {}
    for line in lines_of(client, embedded.output_file_id):
        body = line["response"]["body"]
        vector = body["data"][0]["embedding"]
        if isinstance(vector, str):  # encoding_format=base64: little-endian float32, as the client decodes it
            body["data"][0]["embedding"] = np.frombuffer(base64.b64decode(vector), "<f4").tolist()
        responses[line["custom_id"]] = CreateEmbeddingResponse.model_validate(body)
    assert sorted(responses) == sorted(line["custom_id"] for line in embeds)
    expected = sentence_transformer_vectors(minilm_path, [line["body"]["input"] for line in embeds])
    for i in range(6):
        np.testing.assert_allclose(
            np.asarray(responses[f"emb-{i}"].data[0].embedding), expected[i], atol=1e-5
        )
        assert responses[f"emb-{i}"].usage.prompt_tokens > 0


def test_cancel_mid_run_keeps_the_finished_requests(service):
    client = service.client()
    lines = [embed_line(i, model="slow-embed") for i in range(80)]
    batch = client.batches.create(
        input_file_id=upload(client, lines).id, endpoint="/v1/embeddings", completion_window="24h"
    )
    wait(client, batch.id, lambda b: b.request_counts.completed >= 4)
    assert client.batches.cancel(batch.id).status == "cancelling"
    cancelled = wait(client, batch.id, lambda b: b.status == "cancelled", 60)
    assert cancelled.cancelling_at and cancelled.cancelled_at
    served = [line["custom_id"] for line in lines_of(client, cancelled.output_file_id)]
    assert 4 <= len(served) < 80 and len(set(served)) == len(served) and len(served) % 4 == 0
    assert cancelled.request_counts.completed == len(served) and cancelled.request_counts.total == 80
    finished = next(b.id for b in client.batches.list() if b.status == "completed")
    with pytest.raises(openai.APIStatusError) as refused:  # a finished batch cannot be cancelled
        client.batches.cancel(finished)
    assert refused.value.status_code == 409


def test_a_service_killed_mid_batch_resumes_it_after_restart(service):
    client = service.client()
    lines = [embed_line(i, model="slow-embed") for i in range(40)]
    source = upload(client, lines)
    batch = client.batches.create(input_file_id=source.id, endpoint="/v1/embeddings", completion_window="24h")
    wait(client, batch.id, lambda b: b.request_counts.completed >= 4)
    job_pid = service.batch_state(batch.id)["_job"]["pid"]
    service.stop(signal.SIGKILL)  # the machine goes: the service and the batch's job with it
    os.killpg(job_pid, signal.SIGKILL)
    service.start()
    client = service.client()
    assert client.files.retrieve(source.id).bytes == source.bytes  # nothing lost
    done = wait(client, batch.id, lambda b: b.status == "completed")
    served = [line["custom_id"] for line in lines_of(client, done.output_file_id)]
    assert sorted(served) == sorted(line["custom_id"] for line in lines)  # each exactly once
    assert done.request_counts.completed == 40 and done.error_file_id is None
    assert service.batch_state(batch.id)["_job"]["attempts"] == 2
