#!/usr/bin/env python3
"""Writes the guest-test runner's results as JUnit XML and TAP 13 for CI.

    test-report.py RESULTS.tsv [--junit FILE] [--tap FILE] [--suite NAME]

RESULTS.tsv has one line per test, as scripts/guest-test appends them:

    NAME <TAB> PASS|FAIL|SKIP <TAB> SECONDS <TAB> WHY <TAB> LOG

WHY is the runner's one-line reason (tabs and newlines already made
spaces), LOG the test's log file (may be missing). A failure carries its
message and the end of its log, with the plugin's exit summary, which is
added whole when it lies before that end. Any byte may be in the files:
text is decoded as UTF-8 with replacement and characters XML 1.0 cannot
hold are dropped; xml.etree does the escaping.
"""

import argparse
import re
import socket
import sys
import time
import xml.etree.ElementTree as ET

# Lines of a failed test's log that go into the report.
TAIL_LINES = 40
# The plugin summary's lines at most, when the summary lies before the tail.
SUMMARY_LINES = 40

# Characters XML 1.0 does not allow (C0 controls but tab, LF, CR; the
# surrogates that errors="surrogateescape" could leave; U+FFFE, U+FFFF).
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def clean(text):
    """Text XML 1.0 and YAML can hold: invalid characters removed, CRs and
    the Unicode line and paragraph separators made newlines (YAML 1.1
    reads U+2028 and U+2029 as line breaks, TAP::Parser does not)."""
    text = _INVALID_XML.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\u2028", "\n").replace("\u2029", "\n")


def decode(raw):
    return clean(raw.decode("utf-8", errors="replace"))


def log_excerpt(path):
    """The end of the log, with the plugin summary whole if it starts
    earlier; '' when there is no log."""
    try:
        with open(path, "rb") as f:
            lines = decode(f.read()).split("\n")
    except OSError:
        return ""
    if lines and lines[-1] == "":
        lines.pop()
    tail_start = max(0, len(lines) - TAIL_LINES)
    parts = []
    for i, line in enumerate(lines):
        if line.startswith("cvmem summary") and i < tail_start:
            parts.append("\n".join(lines[i:min(i + SUMMARY_LINES, tail_start)]))
            parts.append("[...]")
            break
    parts.append("\n".join(lines[tail_start:]))
    return "\n".join(parts)


class Result:
    def __init__(self, name, verdict, seconds, why, log):
        self.name, self.verdict, self.why, self.log = name, verdict, why, log
        try:
            self.seconds = float(seconds)
        except ValueError:
            self.seconds = 0.0


def read_results(path):
    results = []
    with open(path, "rb") as f:
        for raw in f.read().split(b"\n"):
            if not raw.strip():
                continue
            fields = raw.split(b"\t")
            fields += [b""] * (5 - len(fields))
            name, verdict, seconds, why = (decode(x).strip() for x in fields[:4])
            log = fields[4].decode("utf-8", errors="surrogateescape")
            if verdict not in ("PASS", "FAIL", "SKIP"):
                verdict = "FAIL"
                why = f"unknown verdict in the results: {why}"
            results.append(Result(name, verdict, seconds, why, log))
    return results


def junit(results, suite):
    failures = sum(r.verdict == "FAIL" for r in results)
    skipped = sum(r.verdict == "SKIP" for r in results)
    total = f"{sum(r.seconds for r in results):.3f}"
    counts = {"tests": str(len(results)), "failures": str(failures),
              "errors": "0", "time": total}
    # junit-10.xsd (schemas/) has `skipped` on <testsuite> only.
    root = ET.Element("testsuites", {"name": suite, **counts})
    ts = ET.SubElement(root, "testsuite", {
        "name": suite, **counts, "skipped": str(skipped),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "hostname": socket.gethostname(),
    })
    for r in results:
        tc = ET.SubElement(ts, "testcase", {
            "classname": suite, "name": r.name, "time": f"{r.seconds:.3f}"})
        if r.verdict == "FAIL":
            el = ET.SubElement(tc, "failure", {"message": r.why, "type": "FAIL"})
            el.text = log_excerpt(r.log)
        elif r.verdict == "SKIP":
            ET.SubElement(tc, "skipped", {"message": r.why})
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def yaml_quote(text):
    """`text` (already clean()) as a YAML double-quoted scalar on one line,
    with only the escapes YAML 1.2 and TAP::Parser's YAMLish reader both
    read: backslash, quote, newline, tab, and \\xHH for DEL and the C1
    controls, which YAML does not allow raw. Other characters go as
    they are (UTF-8)."""
    out = []
    for c in text:
        if c in '\\"':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif "\x7f" <= c <= "\x9f":
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def tap(results):
    out = ["TAP version 13", f"1..{len(results)}"]
    for n, r in enumerate(results, 1):
        # '#' starts a directive in a TAP description.
        desc = r.name.replace("\\", "\\\\").replace("#", "\\#")
        if r.verdict == "PASS":
            out.append(f"ok {n} - {desc}")
        elif r.verdict == "SKIP":
            out.append(f"ok {n} - {desc} # SKIP {r.why}".rstrip())
        else:
            out.append(f"not ok {n} - {desc}")
        if r.verdict == "FAIL":
            out.append("  ---")
            out.append(f"  message: {yaml_quote(r.why)}")
            out.append(f"  duration_ms: {round(r.seconds * 1000)}")
            excerpt = log_excerpt(r.log)
            if excerpt:
                # One quoted scalar, not a block: TAP::Parser's YAMLish
                # reader ends a block at an empty line, and a block's
                # indentation is guessed from its first line, which a
                # log's may begin with spaces.
                out.append(f"  log: {yaml_quote(excerpt + chr(10))}")
            out.append("  ...")
    return "\n".join(out) + "\n"


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results")
    p.add_argument("--junit")
    p.add_argument("--tap")
    p.add_argument("--suite", default="cvmem-guest-tests")
    a = p.parse_args(argv)
    results = read_results(a.results)
    if a.junit:
        with open(a.junit, "w", encoding="utf-8") as f:
            f.write(junit(results, a.suite))
    if a.tap:
        with open(a.tap, "w", encoding="utf-8") as f:
            f.write(tap(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
