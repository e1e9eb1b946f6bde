#!/usr/bin/env python3
"""Loads every binary's JUnit samples (target/junit-samples/<tool>.<mode>.xml, kept by the test
harness) the way Jenkins' consumers do: validated against the xUnit plugin's JUnit rules
(tests/cli/fixtures/junit-xunit.xsd, with xmlschema) and parsed by a real JUnit reader
(junitparser), whose counts must agree with the file's own. Every tool must have a sample in
each of its modes. Prints one line per file; exits 1 on any rejection or missing sample."""
import pathlib
import sys

import junitparser
import xmlschema

root = pathlib.Path(sys.argv[1])
samples = root / "target" / "junit-samples"
schema = xmlschema.XMLSchema(str(root / "tests/cli/fixtures/junit-xunit.xsd"))
tools = sys.argv[2].split(",")
modes = ["pass", "fail", "could-not-run"]
# A report of past runs has no check that can fail: its runs are listed (failed ones as
# warnings), so it has no "fail" mode to sample.
no_such_mode = {("generate_deployment_report", "fail")}
bad = 0
for tool in tools:
    for mode in modes:
        if (tool, mode) in no_such_mode:
            continue
        f = samples / f"{tool}.{mode}.xml"
        if not f.exists():
            print(f"MISSING {tool} {mode}: no test ran it in this mode")
            bad += 1
            continue
        errors = list(schema.iter_errors(str(f)))
        if errors:
            print(f"REJECTED {f.name}: {errors[0].reason}")
            bad += 1
            continue
        xml = junitparser.JUnitXml.fromfile(str(f))
        suites = list(xml) if isinstance(xml, junitparser.JUnitXml) else [xml]
        cases = [c for s in suites for c in s]
        failed = sum(1 for c in cases if any(isinstance(r, junitparser.Failure) for r in c.result))
        skipped = sum(1 for c in cases if any(isinstance(r, junitparser.Skipped) for r in c.result))
        declared = [(s.tests, s.failures, s.skipped) for s in suites]
        total = (sum(d[0] for d in declared), sum(d[1] for d in declared), sum(d[2] for d in declared))
        if total != (len(cases), failed, skipped) or not cases:
            print(f"REJECTED {f.name}: declares {total}, junitparser reads {(len(cases), failed, skipped)}")
            bad += 1
            continue
        # Jenkins shows suite properties: every suite names its deployment (issue 23).
        ids = [dict((p.name, p.value) for p in s.properties()).get("deployment_id") for s in suites]
        if not all(ids):
            print(f"REJECTED {f.name}: a suite without a deployment_id property ({ids})")
            bad += 1
            continue
        if (mode in ("fail", "could-not-run")) != (failed > 0):
            print(f"REJECTED {f.name}: mode {mode} but {failed} failures")
            bad += 1
            continue
        print(f"OK {f.name}: {len(cases)} tests, {failed} failed, {skipped} skipped")
sys.exit(1 if bad else 0)
