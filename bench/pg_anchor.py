#!/usr/bin/env python3
"""The anchor of bench/pg_bench.py: the work of build/pg_bench done with psycopg 3 (PyPI
psycopg[binary], libpq underneath) on the same server.

    pg_anchor.py URL single COUNT            COUNT statements one at a time
    pg_anchor.py URL pipelined COUNT BATCH   COUNT statements, BATCH at a time in one
                                             conn.pipeline() block (psycopg's pipeline mode)

The statement is `SELECT $1::int8` with a binary parameter and binary results, prepared from
its first execution (prepare_threshold=0), autocommit; every result is checked. Prints one
line: {"mode": ..., "statements": N, "seconds": S, "per_second": R, "cpu_us_per_statement": C}
(C: the process's CPU time over the timed part, per statement).
"""
import json
import sys
import time

import psycopg


def main():
    if len(sys.argv) < 4:
        sys.exit("usage: pg_anchor.py URL single|pipelined COUNT [BATCH]")
    url, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    sql = "SELECT %b::int8"
    with psycopg.connect(url, autocommit=True, prepare_threshold=0) as conn:
        cur = conn.cursor(binary=True)
        for i in range(200):   # warm up, as pg_bench does
            cur.execute(sql, (i,))
            assert cur.fetchone()[0] == i
        start, start_cpu = time.perf_counter(), time.process_time()
        if mode == "single":
            for i in range(count):
                cur.execute(sql, (i,))
                if cur.fetchone()[0] != i:
                    sys.exit("pg_anchor: wrong value")
        elif mode == "pipelined":
            done = 0
            while done < count:
                n = min(batch, count - done)
                with conn.pipeline():
                    curs = []
                    for i in range(done, done + n):
                        c = conn.cursor(binary=True)
                        c.execute(sql, (i,))
                        curs.append(c)
                for k, c in enumerate(curs):
                    if c.fetchone()[0] != done + k:
                        sys.exit("pg_anchor: wrong value")
                done += n
        else:
            sys.exit(f"pg_anchor: unknown mode {mode}")
        seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    print(json.dumps({"mode": mode, "statements": count, "batch": batch, "seconds": seconds,
                      "per_second": count / seconds, "cpu_us_per_statement": cpu * 1e6 / count}))


if __name__ == "__main__":
    main()
