#!/usr/bin/env bash
# llm serve end to end: a tiny fine-tuned model behind OpenAI's API on a free local port, exercised
# with curl and with the `openai` npm package (a client nobody here wrote): health, models, chat and
# completions (plain and streamed as server-sent events ending in [DONE]), whole UTF-8 characters in
# every event, bad requests refused with 4xx and OpenAI's error body, concurrent requests all
# answered correctly, and a clean exit on SIGTERM.
llm=$1 work=$2
source "$(dirname "$0")/common.sh"
rm -rf "$work" && mkdir -p "$work"
make_tokenizer "$work/tok"
"$llm" pretrain --run "$work/run" --tokenizer "$work/tok" "${TINY[@]}" --set train.max_steps=4 >"$work/pretrain.log" 2>&1 ||
  fail "pretrain failed: $(tail -3 "$work/pretrain.log")"
"$llm" sft --model "$work/run/pretrain/final" --run "$work/run" --set train.max_steps=4 --set train.batch_size=4 \
  --set tasks.test_size=3 --set tasks.max_new_tokens=4 --set train.threads=1 --set train.warmup_steps=1 >"$work/sft.log" 2>&1 ||
  fail "sft failed: $(tail -3 "$work/sft.log")"

start_serve --model "$work/run/sft/final" --threads 1 --max-tokens 32 --max-body 4096
model=$(basename "$work/run")/sft

c() { curl -sS -o "$work/body" -w "%{http_code}" "$@"; }
[ "$(c "$url/health")" = 200 ] && grep -q '"ok"' "$work/body" || fail "GET /health: $(cat "$work/body")"
[ "$(c "$url/v1/models")" = 200 ] && grep -q "\"$model\"" "$work/body" || fail "GET /v1/models: $(cat "$work/body")"

post() { c -X POST -H "Content-Type: application/json" --data-binary "$2" "$url$1"; }
expect() {  # status path body json-check
  local got
  got=$(post "$2" "$3")
  [ "$got" = "$1" ] || fail "POST $2 $3: HTTP $got, expected $1: $(cat "$work/body")"
  python3 -c "import json,sys; b=json.load(open('$work/body')); assert $4, b" || fail "POST $2 $3: $(cat "$work/body")"
}
expect 200 /v1/chat/completions "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"What is 2 + 3?\"}],\"max_tokens\":4,\"temperature\":0}" \
  "b['object']=='chat.completion' and b['choices'][0]['message']['role']=='assistant' and b['usage']['completion_tokens']>=1"
expect 200 /v1/completions "{\"model\":\"$model\",\"prompt\":\"It was\",\"max_tokens\":3}" \
  "b['object']=='text_completion' and isinstance(b['choices'][0]['text'], str)"
expect 400 /v1/chat/completions '{"model": ' "b['error']['type']=='invalid_request_error' and 'JSON' in b['error']['message']"
expect 404 /v1/chat/completions '{"model":"gpt-4","messages":[{"role":"user","content":"hi"}]}' "b['error']['code']=='model_not_found'"
expect 400 /v1/chat/completions "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":33}" \
  "b['error']['param']=='max_tokens' and '32' in b['error']['message']"
expect 400 /v1/chat/completions "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"$(printf 'word %.0s' $(seq 70))\"}],\"max_tokens\":8}" \
  "b['error']['code']=='context_length_exceeded'"
expect 400 /v1/chat/completions "{\"model\":\"$model\",\"messages\":[{\"role\":\"wizard\",\"content\":\"hi\"}]}" "'wizard' in b['error']['message']"
expect 413 /v1/completions "{\"model\":\"$model\",\"prompt\":\"$(head -c 5000 /dev/zero | tr '\0' a)\"}" "'max-body' in b['error']['message']"

# Streaming: events in order, each a whole-UTF-8 JSON chunk, then [DONE]. The prompt invites
# multi-byte output (a byte-level model can emit half a character per token).
curl -sS -N -X POST -H "Content-Type: application/json" --data-binary \
  "{\"model\":\"$model\",\"prompt\":\"caf\u00e9 \u00e9t\u00e9 \u2014\",\"max_tokens\":24,\"temperature\":1.5,\"stream\":true,\"seed\":3}" \
  "$url/v1/completions" >"$work/stream.txt" || fail "streaming request failed"
python3 - "$work/stream.txt" <<'PY' || fail "the event stream is malformed: $(head -c 600 "$work/stream.txt")"
import json, sys
raw = open(sys.argv[1], "rb").read()
events = [e for e in raw.split(b"\n\n") if e.strip()]
assert events[-1] == b"data: [DONE]", events[-1]
for e in events[:-1]:
    assert e.startswith(b"data: "), e
    e[6:].decode("utf-8")  # strict: a split character raises here
    chunk = json.loads(e[6:])
    assert chunk["object"] == "text_completion", chunk
assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] in ("stop", "length")
print(f"{len(events) - 1} events, every one whole UTF-8, then [DONE]")
PY

# Concurrency: 6 requests at once, each answered, and the greedy answers all equal (no request
# corrupted another's cache).
for i in 1 2 3 4 5 6; do
  curl -sS -X POST -H "Content-Type: application/json" --data-binary \
    "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"What is 7 + 8?\"}],\"max_tokens\":6,\"temperature\":0}" \
    "$url/v1/chat/completions" >"$work/concurrent-$i.json" &
done
wait $(jobs -p | grep -v "^$pid$") 2>/dev/null || true
python3 - "$work" <<'PY' || fail "concurrent requests went wrong"
import json, sys
answers = [json.load(open(f"{sys.argv[1]}/concurrent-{i}.json"))["choices"][0]["message"]["content"] for i in range(1, 7)]
assert len(set(answers)) == 1, answers
print(f"6 concurrent requests, one answer: {answers[0]!r}")
PY

node "$(dirname "$0")/openai_client.mjs" "$url/v1" "$model" >"$work/openai.log" 2>&1 ||
  fail "the openai client failed: $(cat "$work/openai.log")"

kill -TERM $pid
for _ in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
! kill -0 $pid 2>/dev/null || fail "serve still running 10 s after SIGTERM"
wait $pid || fail "serve exited non-zero after SIGTERM: $(tail -3 "$work/serve.log")"
grep -q "SIGTERM received" "$work/serve.log" && grep -q "stopped" "$work/serve.log" || fail "no clean stop: $(tail -3 "$work/serve.log")"
trap - EXIT
echo "serve: health, models, chat, completions, streaming, errors, concurrency, the openai client and SIGTERM all as expected"
