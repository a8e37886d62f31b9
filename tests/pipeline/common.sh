# Shared by the pipeline tests: a tiny tokenizer and a tiny model, so each run takes seconds.
# Usage (sourced): llm=<path to llm>; work=<scratch folder>
set -euo pipefail

# 512 tokens trained on the first 300 KB of the corpus, with the pipeline's special tokens.
make_tokenizer() {
  head -c 300000 data/austen/train.txt >"$work/corpus.txt"
  "$llm" tokenizer train --input "$work/corpus.txt" --vocab-size 512 --chat --out "$1" >/dev/null
}

# C 32, 2 layers, 2 heads, 1 kv head, T 32, B 4; dropout on, so the random generator's state matters
# for exact resume.
TINY=(--set model.hidden_size=32 --set model.num_hidden_layers=2 --set model.num_attention_heads=2
  --set model.num_key_value_heads=1 --set model.max_position_embeddings=64 --set model.multiple_of=8
  --set model.dropout=0.1 --set train.seq_len=32 --set train.batch_size=4 --set train.warmup_steps=2
  --set train.learning_rate=3e-3 --set train.min_lr=3e-4 --set train.eval_interval=4 --set train.eval_batches=1
  --set train.log_interval=1 --set train.threads=1 --samples 0)

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# Starts `llm serve` in the background with the given options (--port 0: a free port), waits until it
# listens, and sets $pid and $url; a server that exits first fails the test with its log.
start_serve() {
  "$llm" serve "$@" --port 0 >"$work/serve.log" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' EXIT
  for _ in $(seq 200); do
    grep -q "on http://" "$work/serve.log" && break
    kill -0 $pid 2>/dev/null || fail "serve exited: $(cat "$work/serve.log")"
    sleep 0.1
  done
  url=$(grep -o "http://[0-9.:]*" "$work/serve.log" | head -1)
  [ -n "$url" ] || fail "serve printed no address: $(cat "$work/serve.log")"
}
