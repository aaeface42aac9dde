#!/usr/bin/env python3
"""Self-test of test-report.py: a fake result set with hostile text (XML
metacharacters, quotes, control characters, bytes that are not UTF-8, a
'#' in a name) must give JUnit XML that xml.etree parses back to the same
cases, and TAP 13 whose lines a TAP consumer reads right. Run by
scripts/test; prints '... passed, 0 failed' and exits 0 on success."""

import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
checks = failures = 0


def check(cond, what):
    global checks, failures
    checks += 1
    if not cond:
        failures += 1
        print(f"FAIL: {what}")


def main():
    with tempfile.TemporaryDirectory() as d:
        fail_log = os.path.join(d, "fail.log")
        with open(fail_log, "wb") as f:
            f.write(b"$ qemu -append 'a<b&c'\n")
            f.write(b"early line\n" * 60)
            f.write(b"cvmem summary: triple fault on vCPU 0 at RIP 0x1: <#GP> & \"quoted\"\n")
            f.write(b"  violations    RMP 0\n")
            f.write(b"serial junk \x00\x01\x1b[0m \xff\xfe\xc3\x28 end\n")
            f.write(b"late line\r\n" * 45)
            f.write(b"last line \xe2\x9c\x93")
        pass_log = os.path.join(d, "pass.log")
        with open(pass_log, "wb") as f:
            f.write(b"ok\n")
        tsv = os.path.join(d, "results.tsv")
        with open(tsv, "wb") as f:
            f.write(b"memtest\tPASS\t1.5\t1.5 s\t" + pass_log.encode() + b"\n")
            f.write(b"bad<&>\"test\"\tFAIL\t12.0\tsummary lacks /a<b/ & \"x\" \x07\xff (12.0 s)\t"
                    + fail_log.encode() + b"\n")
            f.write(b"skip#me\tSKIP\t0\tno /usr/bin/qemu-system-x86_64 (run scripts/setup)\t\n")
            f.write(b"nolog\tFAIL\t0\tno image nolog.elf\t/nonexistent/nolog.log\n")
        junit, tap = os.path.join(d, "r.xml"), os.path.join(d, "r.tap")
        rc = subprocess.call([sys.executable, os.path.join(HERE, "test-report.py"), tsv,
                              "--junit", junit, "--tap", tap])
        check(rc == 0, f"test-report.py exits 0, not {rc}")

        root = ET.parse(junit).getroot()
        check(root.tag == "testsuites", "root is <testsuites>")
        suites = root.findall("testsuite")
        check(len(suites) == 1, "one <testsuite>")
        s = suites[0]
        check((s.get("tests"), s.get("failures"), s.get("skipped"), s.get("errors"))
              == ("4", "2", "1", "0"), f"suite counts {dict(s.attrib)}")
        cases = s.findall("testcase")
        names = [c.get("name") for c in cases]
        check(names == ["memtest", 'bad<&>"test"', "skip#me", "nolog"], f"names {names}")
        check(all(float(c.get("time")) >= 0 for c in cases), "every case has a time")
        check(cases[0].find("failure") is None and cases[0].find("skipped") is None, "pass is plain")
        fail = cases[1].find("failure")
        check(fail is not None, "failure element")
        msg = fail.get("message")
        check(msg.startswith('summary lacks /a<b/ & "x"') and "\x07" not in msg,
              f"message kept, control char dropped: {msg!r}")
        text = fail.text or ""
        check("cvmem summary: triple fault on vCPU 0 at RIP 0x1: <#GP> & \"quoted\"" in text,
              "the plugin summary is in the failure, though before the tail")
        check("last line \u2713" in text, "the log's end is in the failure")
        check("\x00" not in text and "\x1b" not in text and "\r" not in text,
              "no control characters in the failure text")
        check("\ufffd" in text, "non-UTF-8 bytes replaced")
        check(text.count("early line") < 5, "the log is cut to its tail")
        check(cases[2].find("skipped") is not None
              and "scripts/setup" in cases[2].find("skipped").get("message"), "skip with reason")
        check(cases[3].find("failure") is not None, "a failure without a log")

        lines = open(tap, encoding="utf-8").read().split("\n")
        check(lines[0] == "TAP version 13", "TAP version line")
        check(lines[1] == "1..4", "TAP plan")
        results = [l for l in lines if re.match(r"^(not )?ok \d+ ", l)]
        check(results == ["ok 1 - memtest", 'not ok 2 - bad<&>"test"',
                          "ok 3 - skip\\#me # SKIP no /usr/bin/qemu-system-x86_64 (run scripts/setup)",
                          "not ok 4 - nolog"], f"TAP result lines {results}")
        i = lines.index('not ok 2 - bad<&>"test"')
        check(lines[i + 1] == "  ---" and lines[i + 2].startswith("  message: \"summary lacks"),
              "YAML block after a failure")
        block = lines[i + 1:lines.index("  ...", i)]
        check(all(l.startswith("  ") for l in block), "YAML block indented")
        check(any("cvmem summary: triple fault" in l for l in block), "summary in the TAP block")
        check(all(not re.search(r"[\x00-\x08\x0b-\x1f]", l) for l in lines), "no control chars in TAP")

    print(f"test-report self-test: {checks - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
