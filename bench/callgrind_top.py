"""Figures of one path for bench/streaming_instructions.sh, from a callgrind dump: the table
row (answers streamed, instructions, instructions per answer) on stdout, and the functions that
executed the most instructions themselves (exclusive counts) appended to TOP_FILE.

With --over, where one path spends more than another, function by function, per answer: the
functions ragway executes beyond the bare proxy are its own share of the work.

usage: callgrind_top.py NAME LOAD_JSON STREAMS CALLGRIND_FILE TOP TOP_FILE
       callgrind_top.py --over NAME LOAD_JSON CALLGRIND_FILE BASE BASE_LOAD_JSON BASE_CALLGRIND_FILE STREAMS TOP
"""

import collections
import json
import re
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


def answers(load_json, streams):
    """Every answer streamed while counting: stream_load counts those started after its ramp,
    and each stream started one answer during the ramp."""
    with open(load_json) as f:
        return json.load(f)["requests"] + int(streams)


def per_answer(dump, load_json, streams):
    """Instructions per answer by function, recursion levels (`f'2`) counted as one function."""
    count = max(answers(load_json, streams), 1)
    per = collections.Counter()
    for function, instructions in exclusive(dump).items():
        per[re.sub(r"'\d+$", "", function)] += instructions / count
    return per


def over():
    name, load, dump, base, base_load, base_dump, streams, top = sys.argv[2:10]
    path, floor = per_answer(dump, load, streams), per_answer(base_dump, base_load, streams)
    more = {f: path[f] - floor[f] for f in path.keys() | floor.keys()}
    # The two use different allocators (mimalloc, glibc's): those functions show on either side.
    print(f"{name} over {base}: {sum(path.values()) - sum(floor.values()):,.0f} more instructions"
          f" an answer; the functions with the most more (per answer: more, {name}, {base})")
    for function, extra in sorted(more.items(), key=lambda item: -item[1])[: int(top)]:
        print(f"  {extra:8,.0f} {path[function]:8,.0f} {floor[function]:8,.0f}  {function[:100]}")


def main():
    if sys.argv[1] == "--over":
        return over()
    name, load_json, streams, dump, top, top_file = sys.argv[1:7]
    answers_streamed = answers(load_json, streams)
    counts = exclusive(dump)
    total = sum(counts.values())
    print(f"{name:<30} {answers_streamed:>9} {total:>16,} {total // max(answers_streamed, 1):>14,}")
    with open(top_file, "a") as out:
        out.write(f"{name}: the top functions by their own instructions\n")
        for function, count in counts.most_common(int(top)):
            out.write(f"  {100 * count / total:5.1f}%  {function[:110]}\n")


main()
