#!/usr/bin/env bash
# Downloaded models through every program: small random bf16 models in Qwen3's and Llama 3.2's
# layouts, with their real tokenizers and chat templates (tests/interop/hf_reference.py tiny-model,
# from the files scripts/setup.sh fetches), run by llm tokenizer, generate, chat, serve, evaluate,
# sft --lora, sft --qlora and export. The weights are random, so the text is nonsense: what is
# checked is that each program reads the folder, uses its tokenizer and template, stops where the
# model says, and writes folders that load again.
llm=$1 work=$2
source "$(dirname "$0")/common.sh"
rm -rf "$work" && mkdir -p "$work"
for family in qwen3:qwen3 llama3:llama3_2; do
  /usr/bin/python3 tests/interop/hf_reference.py tiny-model --family "${family%%:*}" \
    --tokenizer-dir ".cache/hf/${family#*:}/models" --out "$work/${family%%:*}" >/dev/null ||
    fail "hf_reference.py tiny-model ${family%%:*} failed (is .cache/hf/${family#*:} there? run scripts/setup.sh)"
done
qwen=$work/qwen3 llama=$work/llama3

# The tokenizer of a model folder: Llama 3's post-processor puts <|begin_of_text|> (128000) first.
[ "$("$llm" tokenizer encode --tokenizer "$llama" --text "Hello world" --add-special-tokens)" = "128000 9906 1917" ] ||
  fail "llm tokenizer encode on Llama 3.2's tokenizer.json"
[ "$("$llm" tokenizer decode --tokenizer "$qwen" --ids "151644 872 198" | od -c | head -1)" != "" ] || fail "decode"
"$llm" tokenizer encode --tokenizer "$qwen" --text "<think>x</think>" --format tokens | grep -q "^<think>|" ||
  fail "Qwen3's <think> is one token"

# generate: plain and chat, greedy, in the files' dtype.
"$llm" generate --model "$qwen" --prompt "The capital of France is" --max-new-tokens 6 --temperature 0 \
  >"$work/generate.txt" 2>&1 || fail "generate: $(tail -3 "$work/generate.txt")"
grep -q "^The capital of France is" "$work/generate.txt" || fail "generate did not echo its prompt: $(cat "$work/generate.txt")"
"$llm" generate --model "$qwen" --chat --no-thinking --system "Be brief." --prompt "Hi" --max-new-tokens 4 \
  --temperature 0 >"$work/generate-chat.txt" 2>&1 || fail "generate --chat: $(tail -3 "$work/generate-chat.txt")"
"$llm" generate --model "$llama" --chat --no-thinking --prompt "Hi" >"$work/refused.txt" 2>&1 &&
  fail "--no-thinking on Llama's template should be refused"
grep -q "thinking switch" "$work/refused.txt" || fail "the refusal does not say why: $(cat "$work/refused.txt")"

# chat: two turns and a reset, on both templates.
for model in "$qwen" "$llama"; do
  printf 'Hello\nAnd again\n/reset\nHi\n/quit\n' | "$llm" chat --model "$model" --max-new-tokens 4 --temperature 0 \
    >"$work/chat.txt" 2>&1 || fail "chat on $model: $(tail -3 "$work/chat.txt")"
  grep -q "template)" "$work/chat.txt" && grep -q "(a new conversation)" "$work/chat.txt" || fail "chat: $(cat "$work/chat.txt")"
done

# serve: a chat completion with a system message and Qwen3's thinking switch off, and a completion.
start_serve --model "$qwen" --threads 1 --max-tokens 16
post() { curl -sS -o "$work/body" -w "%{http_code}" -X POST -H "Content-Type: application/json" --data-binary "$2" "$url$1"; }
[ "$(post /v1/chat/completions '{"model":"qwen3","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],"max_tokens":4,"temperature":0,"chat_template_kwargs":{"enable_thinking":false}}')" = 200 ] ||
  fail "chat completion: $(cat "$work/body")"
python3 -c "import json; b=json.load(open('$work/body')); assert b['usage']['prompt_tokens'] > 10, b" || fail "$(cat "$work/body")"
[ "$(post /v1/completions '{"model":"qwen3","prompt":"Once upon","max_tokens":3}')" = 200 ] || fail "completion: $(cat "$work/body")"
kill -TERM $pid && wait $pid || fail "serve did not stop cleanly: $(tail -3 "$work/serve.log")"
trap - EXIT

# evaluate: every section, the tasks through Qwen3's template.
"$llm" evaluate --model "$qwen" --out "$work/evaluation" --set eval.val_tokens=600 --set eval.seq_len=64 \
  --set eval.mc_items=4 --set eval.pass_problems=2 --set eval.pass_samples=2 --set tasks.test_size=3 \
  --set tasks.max_new_tokens=4 >"$work/evaluate.log" 2>&1 || fail "evaluate: $(tail -5 "$work/evaluate.log")"
python3 -c "import json; r=json.load(open('$work/evaluation/report.json')); assert 'tasks' in r and 'capitals' in r['multiple_choice'], r" ||
  fail "evaluate skipped the tasks: $(cat "$work/evaluate.log")"

# sft with LoRA (Llama 3.2's template) and QLoRA (Qwen3's): a few steps, then final/ loads again
# with its architecture, and its tokenizer files are the original ones.
SFT=(--set train.max_steps=2 --set train.batch_size=2 --set train.threads=1 --set train.warmup_steps=1
  --set tasks.test_size=2 --set tasks.max_new_tokens=3 --set lora.targets=q_proj,v_proj)
"$llm" sft --model "$llama" --run "$work/run" --lora 4 "${SFT[@]}" >"$work/sft-lora.log" 2>&1 ||
  fail "sft --lora: $(tail -5 "$work/sft-lora.log")"
"$llm" sft --model "$qwen" --run "$work/run" --qlora "${SFT[@]}" >"$work/sft-qlora.log" 2>&1 ||
  fail "sft --qlora: $(tail -5 "$work/sft-qlora.log")"
grep -q '"Qwen3ForCausalLM"' "$work/run/sft-qlora/final/config.json" || fail "final/ is not a Qwen3 folder"
cmp -s "$qwen/tokenizer_config.json" "$work/run/sft-qlora/final/tokenizer_config.json" || fail "the tokenizer was not kept"
"$llm" generate --model "$work/run/sft-lora/final" --chat --prompt "Hi" --max-new-tokens 2 --temperature 0 >/dev/null 2>&1 ||
  fail "the LoRA-merged Llama folder does not load"

# export: the Qwen3 folder in fp32, loaded again.
"$llm" export --model "$qwen" --out "$work/qwen3-fp32" --dtype float32 >/dev/null 2>&1 || fail "export"
grep -q '"float32"' "$work/qwen3-fp32/config.json" && grep -q '"qwen3"' "$work/qwen3-fp32/config.json" || fail "export's config.json"
"$llm" generate --model "$work/qwen3-fp32" --prompt "Hi" --max-new-tokens 2 >/dev/null 2>&1 || fail "the export does not load"
echo "hf_models: tokenizer, generate, chat, serve, evaluate, sft --lora, sft --qlora and export on Qwen3 and Llama 3.2 folders"
