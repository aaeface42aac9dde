#!/usr/bin/env python3
"""Self-test of test-report.py: a fake result set with hostile text (XML
metacharacters, quotes, backslashes, control characters, bytes that are
not UTF-8, a '#' in a name, log lines that look like TAP or YAML, empty
and indented lines) must give

- JUnit XML that validates against the Jenkins xUnit plugin's
  junit-10.xsd (schemas/, with xmllint) and that xml.etree parses back
  to the same cases;
- TAP version 13 that Perl's TAP::Parser, the consumer behind `prove`,
  reads back to the same tests, directives and YAML diagnostics
  (tap-parse.pl), with YAML blocks that a YAML parser (PyYAML) reads
  the same way.

It also checks that the checkers can fail: a document the schema
forbids and TAP with a wrong plan are refused. Run by scripts/test;
prints '... passed, 0 failed' and exits 0 on success."""

import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
XSD = os.path.join(HERE, "schemas", "junit-10.xsd")
checks = failures = 0


def check(cond, what):
    global checks, failures
    checks += 1
    if not cond:
        failures += 1
        print(f"FAIL: {what}")


def tap_parse(path):
    """What Perl's TAP::Parser reads in the file (tap-parse.pl), or None."""
    r = subprocess.run(["perl", os.path.join(HERE, "tap-parse.pl"), path],
                       capture_output=True)
    if r.returncode != 0:
        print(r.stderr.decode(errors="replace"), file=sys.stderr)
        return None
    return json.loads(r.stdout)


def main():
    with tempfile.TemporaryDirectory() as d:
        fail_log = os.path.join(d, "fail.log")
        with open(fail_log, "wb") as f:
            f.write(b"$ qemu -append 'a<b&c'\n")
            f.write(b"early line\n" * 60)
            f.write(b"cvmem summary: triple fault on vCPU 0 at RIP 0x1: <#GP> & \"quoted\"\n")
            f.write(b"  violations    RMP 0\n")
            f.write(b"late line\r\n" * 30)
            f.write(b"serial junk \x00\x01\x1b[0m \xff\xfe\xc3\x28 end\n")
            f.write(b"\n  ...\n---\nnot ok 9 - fake\n\tTab-indented: \\\" and \\\\\"q\\\n")
            f.write(b"del \x7f c1 \xc2\x85 \xc2\x9b ls \xe2\x80\xa8 x\n\n\n")
            f.write(b"  indented: key: value # not a comment\n" * 5)
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

        def valid(path):
            r = subprocess.run(["xmllint", "--noout", "--schema", XSD, path],
                               capture_output=True, text=True)
            return r.returncode == 0, r.stderr.strip()

        ok, why = valid(junit)
        check(ok, f"the JUnit XML validates against junit-10.xsd: {why}")
        # The schema can refuse: `skipped` is not an attribute of <testsuites>.
        bad = os.path.join(d, "bad.xml")
        with open(junit, encoding="utf-8") as f, open(bad, "w", encoding="utf-8") as g:
            g.write(f.read().replace("<testsuites ", '<testsuites skipped="1" ', 1))
        check(not valid(bad)[0], "xmllint refuses <testsuites skipped=...>")

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
        check("\tTab-indented: \\\" and \\\\\"q\\" in text, "tabs, backslashes, quotes kept")
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
        check(all(not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", l) for l in lines),
              "no control chars in TAP")

        # What a real TAP consumer reads.
        parsed = tap_parse(tap)
        check(parsed is not None, "TAP::Parser reads the TAP")
        parsed = parsed or {"tests": []}
        check(parsed.get("version") == 13 and parsed.get("plan") == "1..4"
              and parsed.get("good_plan") == 1, f"TAP::Parser: version 13, good plan 1..4: {parsed}")
        check(parsed.get("parse_errors") == [] and parsed.get("unknown") == [],
              f"TAP::Parser: no errors, no unknown lines: {parsed.get('parse_errors')} "
              f"{parsed.get('unknown')}")
        got = [(t["number"], t["ok"], t["description"], t["directive"], t["explanation"])
               for t in parsed["tests"]]
        want = [(1, 1, "- memtest", "", ""), (2, 0, '- bad<&>"test"', "", ""),
                (3, 1, "- skip\\#me", "SKIP", "no /usr/bin/qemu-system-x86_64 (run scripts/setup)"),
                (4, 0, "- nolog", "", "")]
        check(got == want, f"TAP::Parser's tests {got}")
        yamls = ([t.get("yaml") for t in parsed["tests"]] + [None] * 4)[:4]
        check(yamls[0] is None and yamls[2] is None, "no YAML block after a pass or a skip")
        y2 = yamls[1] if len(yamls) > 1 and isinstance(yamls[1], dict) else {}
        y4 = yamls[3] if len(yamls) > 3 and isinstance(yamls[3], dict) else {}
        check(y2.get("message") == cases[1].find("failure").get("message"),
              f"the YAML message is the JUnit one: {y2.get('message')!r}")
        check(str(y2.get("duration_ms")) == "12000", "YAML duration_ms")
        log = y2.get("log", "")
        check(log == text + "\n", "the YAML log is the JUnit failure text, byte for byte")
        check("\n  ...\n---\nnot ok 9 - fake\n" in log, "TAP-like log lines stay in the log")
        check("del \x7f c1 \x85 \x9b ls \n x\n\n\n" in log,
              "DEL, C1 and empty lines kept, U+2028 a newline")
        check(set(y4) == {"message", "duration_ms"} and y4["message"] == "no image nolog.elf",
              f"a failure without a log: {y4}")
        # And what a YAML parser reads: the same mappings.
        blocks, block = [], None
        for l in lines:
            if l == "  ---":
                block = []
            elif l == "  ..." and block is not None:
                # YAMLish reads every scalar as a string.
                try:
                    blocks.append({k: str(v) for k, v in yaml.safe_load("\n".join(block)).items()})
                except yaml.YAMLError as e:
                    blocks.append(f"not YAML: {e}")
                block = None
            elif block is not None:
                block.append(l)
        check(blocks == [y2, y4], "PyYAML reads the YAML blocks as TAP::Parser does")

    # The consumer can refuse: a plan that does not match the tests.
    with tempfile.TemporaryDirectory() as d:
        bad = os.path.join(d, "bad.tap")
        with open(bad, "w") as f:
            f.write("TAP version 13\n1..3\nok 1 - a\nnot ok 3 - b\n")
        p = tap_parse(bad) or {}
        check(p.get("good_plan") == 0 and p.get("parse_errors"), f"TAP::Parser refuses a bad plan: {p}")

    print(f"test-report self-test: {checks - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
