#!/usr/bin/env python3
"""Load on `llm serve`: requests/s and tokens/s under a bounded number of concurrent clients.

Starts the server on a free port with the given model, then runs C clients (threads, one request in
flight each) for a fixed number of requests per client, each a chat completion of up to M tokens,
and prints requests/s, completion tokens/s and latency percentiles per concurrency level. The
server answers one request at a time (the model is shared), so throughput should stay flat as C
grows while latency grows with the queue.

    python3 benchmarks/serve_load.py --model runs/demo/grpo/final --concurrency 1,4,8 --requests 8
"""
import argparse
import json
import re
import statistics
import subprocess
import threading
import time
import urllib.request


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--llm", default="build-solutions/programs/llm")
    p.add_argument("--concurrency", default="1,4,8")
    p.add_argument("--requests", type=int, default=8, help="requests per client")
    p.add_argument("--max-tokens", type=int, default=12)
    p.add_argument("--threads", type=int, default=0, help="the server's compute threads (0: every core)")
    a = p.parse_args()

    server = subprocess.Popen([a.llm, "serve", "--model", a.model, "--port", "0", "--threads", str(a.threads)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = server.stdout.readline()
        m = re.search(r"model '([^']+)'.* on (http://[0-9.:]+)", line)
        if not m:
            raise SystemExit(f"serve_load: the server did not start: {line}{server.stdout.read()}")
        name, url = m.group(1), m.group(2)
        questions = [f"What is {10 + i} + {20 + 2 * i}?" for i in range(50)]
        print(f"llm serve {a.model} ({name}), chat completions of up to {a.max_tokens} tokens, temperature 1")
        print(f"{'clients':>8} {'requests':>9} {'req/s':>7} {'tokens/s':>9} {'p50 s':>7} {'p95 s':>7}")
        for c in [int(x) for x in a.concurrency.split(",")]:
            latencies, tokens, lock = [], [0], threading.Lock()

            def client(k):
                for j in range(a.requests):
                    body = {"model": name, "messages": [{"role": "user", "content": questions[(k * 7 + j) % 50]}],
                            "max_tokens": a.max_tokens, "temperature": 1.0, "seed": k * 1000 + j}
                    t0 = time.perf_counter()
                    r = post(url + "/v1/chat/completions", body)
                    dt = time.perf_counter() - t0
                    with lock:
                        latencies.append(dt)
                        tokens[0] += r["usage"]["completion_tokens"]

            start = time.perf_counter()
            threads = [threading.Thread(target=client, args=(k,)) for k in range(c)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - start
            lat = sorted(latencies)
            p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
            print(f"{c:>8} {len(lat):>9} {len(lat) / wall:>7.1f} {tokens[0] / wall:>9.0f} "
                  f"{statistics.median(lat):>7.3f} {p95:>7.3f}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
