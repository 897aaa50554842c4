"""Figures of one path for bench/streaming_instructions.sh, from a callgrind dump: the table
row (answers streamed, instructions, instructions per answer) on stdout, and the functions that
executed the most instructions themselves (exclusive counts) appended to TOP_FILE.

usage: callgrind_top.py NAME LOAD_JSON STREAMS CALLGRIND_FILE TOP TOP_FILE
"""

import collections
import json
import sys


def exclusive(path):
    """Instructions per function, each counted where it executed (not in its callers)."""
    counts = collections.Counter()
    function, in_call = None, False
    with open(path, errors="replace") as lines:
        for line in lines:
            if line.startswith("fn="):
                function = line[3:].rstrip("\n")
            elif line.startswith("calls="):
                in_call = True  # the next cost line is the call's inclusive cost
            elif line[:1].isdigit() or line[:1] in "+-*":
                parts = line.split()
                if len(parts) >= 2:
                    if not in_call:
                        counts[function] += int(parts[1])
                    in_call = False
    return counts


def main():
    name, load_json, streams, dump, top, top_file = sys.argv[1:7]
    with open(load_json) as f:
        load = json.load(f)
    # Every answer streamed while counting: stream_load counts those started after its ramp,
    # and each stream started one answer during the ramp.
    answers = load["requests"] + int(streams)
    counts = exclusive(dump)
    total = sum(counts.values())
    print(f"{name:<30} {answers:>9} {total:>16,} {total // max(answers, 1):>14,}")
    with open(top_file, "a") as out:
        out.write(f"{name}: the top functions by their own instructions\n")
        for function, count in counts.most_common(int(top)):
            out.write(f"  {100 * count / total:5.1f}%  {function[:110]}\n")


main()
