import json

from rayjobs.batches.batch_lines import check_lines

MODELS = {"chat": {"path": "/m"}, "other": {"path": "/o"}}


def line(custom_id: str, model: str = "chat", url: str = "/v1/chat/completions", **changes) -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return json.dumps(
        {"custom_id": custom_id, "method": "POST", "url": url, "body": body, **changes}
    ).encode()


def test_good_lines_are_accepted_and_an_unknown_model_is_that_lines_error_only():
    checked = check_lines(
        [line("a"), b"", line("b", model="nope"), line("c")], "/v1/chat/completions", MODELS, 10
    )
    assert checked.errors == [] and checked.model == "chat" and checked.total == 3
    assert [json.loads(text)["custom_id"] for text in checked.accepted] == ["a", "c"]
    (rejected,) = checked.rejected
    assert rejected["custom_id"] == "b" and rejected["error"]["code"] == "model_not_found"
    assert "'nope' is not served here (served: chat, other)" in rejected["error"]["message"]


def test_every_invalid_line_is_named_by_its_number():
    lines = [
        line("a"),
        b"{oops",
        b"[1, 2]",
        line(""),
        line("a"),
        line("e", method="GET"),
        line("f", url="/v1/embeddings"),
        json.dumps({"custom_id": "g", "method": "POST", "url": "/v1/chat/completions", "body": "x"}).encode(),
        b"\xff\xfe not utf-8",
    ]
    checked = check_lines(lines, "/v1/chat/completions", MODELS, 100)
    assert [error["line"] for error in checked.errors] == [2, 3, 4, 5, 6, 7, 8, 9]
    messages = [error["message"] for error in checked.errors]
    assert "appears more than once" in messages[3] and "method must be POST" in messages[4]
    assert "url must be the batch's endpoint /v1/chat/completions" in messages[5]


def test_limits_one_model_per_batch_and_empty_files():
    too_many = check_lines([line(str(i)) for i in range(6)], "/v1/chat/completions", MODELS, 5)
    assert [error["code"] for error in too_many.errors] == ["too_many_requests"]
    mixed = check_lines([line("a"), line("b", model="other")], "/v1/chat/completions", MODELS, 5)
    assert "one model; found chat, other" in mixed.errors[0]["message"]
    assert check_lines([b"", b"  "], "/v1/chat/completions", MODELS, 5).errors[0]["code"] == "empty_file"
