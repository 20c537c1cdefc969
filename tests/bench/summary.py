"""`make bench`'s table: every measured row, then each system's throughput and p99 against the
relay (and LiteLLM), medians over rounds, how evenly its connections were served (the least
served connection's answers over the median connection's: 1.00 is fair, near 0 is starvation),
and each system's memory after its runs (the largest RSS and PSS of its rows) against LiteLLM's.
Reads the TSV run.sh writes."""

import collections
import statistics
import sys

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
COLUMNS = ("system", "scenario", "req/s", "p50", "p90", "p99", "max", "errors", "RSS kB", "per conn min/med/max",
           "PSS kB")


def millis(text: str) -> float | None:
    """wrk's latency ('812.00us', '1.43s', '2.10m') in milliseconds."""
    for unit in sorted(UNITS, key=len, reverse=True):
        if text.endswith(unit):
            try:
                return float(text[: -len(unit)]) * UNITS[unit]
            except ValueError:
                return None
    return None


def fairness(spread: str) -> float | None:
    """'min/median/max' answers per connection as min / median."""
    try:
        low, middle, _high = (int(n) for n in spread.split("/"))
    except ValueError:
        return None
    return low / middle if middle else None


def main(path: str) -> None:
    rows = [line.rstrip("\n").split("\t") for line in open(path, encoding="utf-8") if line.strip()]
    print()
    print("\t".join(COLUMNS))
    for row in rows:
        print("\t".join(row))
    rps, p99, fair = collections.defaultdict(list), collections.defaultdict(list), collections.defaultdict(list)
    memory = collections.defaultdict(lambda: [0, 0])  # system -> [RSS kB, PSS kB], the largest seen
    for system, scenario, r, _p50, _p90, q, *rest in rows:
        for column, index in ((0, 2), (1, 4)):  # rows written before the PSS column have none
            if len(rest) > index and rest[index].isdigit():
                memory[system][column] = max(memory[system][column], int(rest[index]))
        evenness = fairness(rest[3]) if len(rest) > 3 else None  # rows written before the column: none
        if evenness is not None:
            fair[(system, scenario)].append(evenness)
        try:
            rps[(system, scenario)].append(float(r))
        except ValueError:
            pass
        if millis(q) is not None:
            p99[(system, scenario)].append(millis(q))
    med_rps = {k: statistics.median(v) for k, v in rps.items()}
    med_p99 = {k: statistics.median(v) for k, v in p99.items()}
    med_fair = {k: statistics.median(v) for k, v in fair.items()}
    systems = sorted({s for s, _ in med_rps if s.startswith("dheera")})
    print()
    print("ratio\tscenario\treq/s\tp99 (lower is better)\tleast-served connection / median (mine, theirs)")
    for scenario in sorted({sc for _, sc in med_rps}):
        for system in systems:
            for other in ("relay", "litellm"):
                mine, theirs = med_rps.get((system, scenario)), med_rps.get((other, scenario))
                if not mine or not theirs:
                    continue
                lat_mine, lat_theirs = med_p99.get((system, scenario)), med_p99.get((other, scenario))
                lat = f"{lat_mine / lat_theirs:.2f}" if lat_mine and lat_theirs else "-"
                evenness = "/".join(f"{med_fair[k]:.2f}" if k in med_fair else "-"
                                    for k in ((system, scenario), (other, scenario)))
                print(f"{system}/{other}\t{scenario}\t{mine / theirs:.2f}\t{lat}\t{evenness}")
    print_memory(memory)


def print_memory(memory: dict) -> None:
    """RSS sums each process's pages, so a gunicorn master and its worker count the pages they share
    twice; PSS counts them once. LiteLLM's proxy with one worker is one process: the two agree."""
    anchor = memory.get("litellm")
    print()
    print("memory\tRSS kB\tPSS kB" + ("\tRSS / LiteLLM's\tPSS / LiteLLM's" if anchor else ""))
    for system in sorted(memory):
        rss, pss = memory[system]
        line = f"{system}\t{rss}\t{pss or '-'}"
        if anchor:
            line += f"\t{rss / anchor[0]:.3f}\t" + (f"{pss / anchor[1]:.3f}" if pss and anchor[1] else "-")
        print(line)


if __name__ == "__main__":
    main(sys.argv[1])
