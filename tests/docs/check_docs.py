#!/usr/bin/env python3
"""The documentation check behind scripts/check-docs.sh (`make docs`).

Checked files: README.md, docs/**/*.md and examples/**/*.md.

Subcommands (each prints "ok"/"FAIL" lines and exits 1 on a failure):

  links     Every relative link resolves to a file or directory inside the
            repository, and a `#anchor` to a heading of the target Markdown
            file (GitHub's heading ids). README.md links only inside the
            repository (no URLs, nothing above the clone). Code spans that
            name repository paths (`server/src/api/mod.rs`,
            `../elsewhere/x.md`) must exist too.
  blocks    Code blocks are well-formed: ```json blocks parse as JSON,
            ```toml as TOML, ```yaml as YAML, JSON given to curl with
            -d/--data parses; in annotated pages (docs/ and examples/, not
            the files in UNANNOTATED) every ```sh and ```json block carries
            a marker (see below), so nothing escapes the check silently.
  drift     The reference pages cover what the code has: every key of
            server/weir.toml and every flag of `weir-server --help` in
            docs/configuration.md, every metric of
            dashboards/metric-names.txt and every alert of
            dashboards/alerts.yml in docs/monitoring.md, every path of
            openapi/openapi.json in docs/api.md, every docs page in
            docs/README.md and in the "Documentation" section of README.md.
  run       Executes the runnable blocks of each page against a real
            weir-server (one fresh server and work dir per page), then the
            curl and CLI commands of README.md's "Quick start" section.

Markers: an HTML comment on the line right above the opening fence.

  <!-- docs-check: run -->           run this ```sh block
  <!-- docs-check: body PUT /v1/topics/orders -->
                                     send this ```json block as the body of
                                     that request (must answer 2xx)
  <!-- docs-check: skip (reason) -->  not executed (output, placeholders,
                                     needs Docker or Kubernetes, ...); JSON,
                                     TOML and YAML still have to parse

Runnable blocks and bodies of one page run in document order in one bash
process (`set -euo pipefail`, so later blocks see earlier variables), in a
temp dir, with `weir` and `weir-server` (the debug builds) first on PATH,
WEIR_SERVER set, `localhost:8080` / `127.0.0.1:8080` replaced by the
server's real address, and curl configured (CURL_HOME) with --fail-with-body,
--silent --show-error and a 70 s --max-time: a 4xx or 5xx answer fails the
block. `weir tail` without --count (it runs until Ctrl-C) is stopped after
3 s and counts as success. Lines starting with `make ` are not run (the
check plays `make run` itself). Each page has 300 s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Pages written before the markers existed; they get every check but the
# "each sh/json block is annotated" rule.
UNANNOTATED = {"docs/security.md", "docs/clients.md"}
# Directories whose contents are not in a clone (gitignored).
IGNORED_DIRS = {".tools", "target", "node_modules", "weir-data", ".git"}
PAGE_TIMEOUT_S = 300
TAIL_SECONDS = 3

MARKER = re.compile(r"^\s*<!--\s*docs-check:\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})\s*([^\s`]*)[^`]*$")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
PATH_SPAN = re.compile(r"^(?:\.\./|\./)*[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+/?$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
ADDRESS = re.compile(r"(?:localhost|127\.0\.0\.1):8080")
SHELL_LANGS = {"sh", "bash", "shell", "console"}


@dataclass
class Block:
    path: str  # relative to ROOT
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    marker: str | None
    section: str  # the nearest heading above


@dataclass
class Page:
    path: str
    lines: list[str]
    blocks: list[Block] = field(default_factory=list)
    headings: list[tuple[int, str, int]] = field(default_factory=list)  # level, text, line
    # (line number, text outside code blocks with code spans blanked)
    prose: list[tuple[int, str]] = field(default_factory=list)
    spans: list[tuple[int, str]] = field(default_factory=list)


def parse(path: Path) -> Page:
    rel = path.relative_to(ROOT).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    page = Page(rel, lines)
    i = 0
    section = ""
    while i < len(lines):
        line = lines[i]
        m = FENCE.match(line)
        if m:
            fence, lang = m.group(2), m.group(3).lower()
            j = i + 1
            body = []
            while j < len(lines):
                close = re.match(r"^ {0,3}(`{3,}|~{3,})\s*$", lines[j])
                if close and close.group(1)[0] == fence[0] and len(close.group(1)) >= len(fence):
                    break
                body.append(lines[j])
                j += 1
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            marker = None
            if k >= 0:
                mm = MARKER.match(lines[k])
                if mm:
                    marker = mm.group(1)
            page.blocks.append(Block(rel, i + 1, lang, "\n".join(body) + "\n", marker, section))
            i = j + 1
            continue
        h = HEADING.match(line)
        if h:
            section = h.group(2)
            page.headings.append((len(h.group(1)), h.group(2), i + 1))
        for s in CODE_SPAN.finditer(line):
            page.spans.append((i + 1, s.group(2).strip()))
        page.prose.append((i + 1, CODE_SPAN.sub(lambda s: " " * len(s.group(0)), line)))
        i += 1
    return page


def md_files() -> list[Path]:
    files = [ROOT / "README.md"]
    for base in ("docs", "examples"):
        for p in sorted((ROOT / base).rglob("*.md")):
            if not set(p.relative_to(ROOT).parts) & IGNORED_DIRS:
                files.append(p)
    return files


# ------------------------------------------------------------------ links
def slug(heading: str) -> str:
    """GitHub's heading id: markup dropped, lower case, punctuation removed,
    spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links -> text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "")
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Page) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, text, _ in page.headings:
        base = slug(text)
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return out


def check_links(pages: dict[str, Page]) -> list[str]:
    errors = []
    cache: dict[str, set[str]] = {}

    def anchors_of(rel: str) -> set[str] | None:
        if rel not in cache:
            p = ROOT / rel
            if not (p.is_file() and p.suffix == ".md"):
                return None
            cache[rel] = anchors(pages[rel] if rel in pages else parse(p))
        return cache[rel]

    for page in pages.values():
        base_dir = (ROOT / page.path).parent
        targets = []
        for n, text in page.prose:
            targets += [(n, m.group(2)) for m in INLINE_LINK.finditer(text)]
            m = REF_DEF.match(text)
            if m:
                targets.append((n, m.group(1)))
        for n, target in targets:
            where = f"{page.path}:{n}"
            if not target:
                errors.append(f"{where}: empty link")
                continue
            if SCHEME.match(target):
                if page.path == "README.md":
                    errors.append(f"{where}: README.md links outside the repository: {target}")
                continue
            path_part, _, anchor = target.partition("#")
            if path_part:
                resolved = (base_dir / path_part).resolve()
                if resolved != ROOT and ROOT not in resolved.parents:
                    errors.append(f"{where}: link leaves the repository: {target}")
                    continue
                if not resolved.exists():
                    errors.append(f"{where}: broken link: {target}")
                    continue
                rel = resolved.relative_to(ROOT).as_posix()
            else:
                rel = page.path
            if anchor:
                known = anchors_of(rel)
                if known is not None and anchor not in known:
                    errors.append(f"{where}: no heading #{anchor} in {rel}")
        # Code spans naming repository paths.
        top = {p.name for p in ROOT.iterdir()} - IGNORED_DIRS
        for n, span in page.spans:
            if "*" in span or not PATH_SPAN.match(span):
                continue
            bare = span[2:] if span.startswith("./") else span
            if set(bare.split("/")) & IGNORED_DIRS or ("/" not in bare.rstrip("/") and not bare.startswith("../")):
                continue  # runtime or build output, or a bare name like ./weir-data
            where = f"{page.path}:{n}"
            if span.startswith(("../", "./")):
                resolved = (base_dir / span).resolve()
                if resolved != ROOT and ROOT not in resolved.parents:
                    errors.append(f"{where}: `{span}` is outside the repository")
                elif not resolved.exists():
                    errors.append(f"{where}: `{span}` does not exist")
            elif span.split("/")[0] in top and not (ROOT / span).exists():
                errors.append(f"{where}: `{span}` does not exist")
    return errors


# ----------------------------------------------------------------- blocks
DATA_ARG = re.compile(r"(?:-d|--data|--data-binary|--data-raw)\s+'([^']*)'", re.S)


def check_blocks(pages: dict[str, Page]) -> list[str]:
    errors = []
    yaml = None
    for page in pages.values():
        annotated = page.path != "README.md" and page.path not in UNANNOTATED
        for b in page.blocks:
            where = f"{b.path}:{b.line}"
            kind = (b.marker or "").split()[0] if b.marker else None
            if b.marker is not None and kind not in ("run", "body", "skip"):
                errors.append(f"{where}: unknown marker `docs-check: {b.marker}`")
            if annotated and b.lang in SHELL_LANGS and kind not in ("run", "skip"):
                errors.append(f"{where}: ```{b.lang} block without `<!-- docs-check: run -->` or `skip (reason)`")
            if annotated and b.lang == "json" and kind not in ("body", "skip"):
                errors.append(f"{where}: ```json block without `<!-- docs-check: body METHOD PATH -->` or `skip (reason)`")
            if kind == "run" and b.lang not in SHELL_LANGS:
                errors.append(f"{where}: `run` marks a ```{b.lang} block (only sh/bash)")
            if kind == "body":
                if b.lang != "json":
                    errors.append(f"{where}: `body` marks a ```{b.lang} block (only json)")
                parts = b.marker.split()
                if len(parts) != 3 or parts[1] not in ("GET", "PUT", "POST", "DELETE") or not parts[2].startswith("/"):
                    errors.append(f"{where}: `body` needs METHOD and PATH: `{b.marker}`")
            try:
                if b.lang == "json":
                    json.loads(b.text)
                elif b.lang == "toml":
                    tomllib.loads(b.text)
                elif b.lang in ("yaml", "yml"):
                    if yaml is None:
                        yaml = load_yaml()
                    if yaml:
                        yaml(b.text)
            except Exception as e:  # noqa: BLE001 - any parse error is the finding
                errors.append(f"{where}: ```{b.lang} block does not parse: {e}")
            if b.lang in SHELL_LANGS:
                for m in DATA_ARG.finditer(b.text):
                    data = m.group(1).strip()
                    if data.startswith(("{", "[")):
                        try:
                            json.loads(data)
                        except ValueError as e:
                            errors.append(f"{where}: JSON given to curl does not parse: {e}")
    return errors


def load_yaml():
    try:
        from ruamel.yaml import YAML  # the docs-check venv has it (check-jsonschema)

        loader = YAML(typ="safe")
        return lambda text: list(loader.load_all(text))
    except ImportError:
        try:
            import yaml as pyyaml

            return lambda text: list(pyyaml.safe_load_all(text))
        except ImportError:
            return None


# ------------------------------------------------------------------ drift
def check_drift(pages: dict[str, Page], server_bin: str | None) -> list[str]:
    errors = []

    def text_of(rel: str) -> str:
        p = ROOT / rel
        if not p.exists():
            errors.append(f"{rel} is missing")
            return ""
        return p.read_text(encoding="utf-8")

    config = text_of("docs/configuration.md")
    keys = re.findall(r"^(?:# )?([a-z][a-z0-9_]+) = ", (ROOT / "server/weir.toml").read_text(), re.M)
    for key in sorted(set(keys)):
        if f"`{key}`" not in config:
            errors.append(f"docs/configuration.md does not document `{key}` (server/weir.toml)")
    if server_bin:
        help_text = subprocess.run([server_bin, "--help"], capture_output=True, text=True, timeout=30).stdout
        for flag in sorted(set(re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z0-9-]+)", help_text, re.M))):
            if flag in ("--help", "--version"):
                continue
            if f"`{flag}" not in config:
                errors.append(f"docs/configuration.md does not document `{flag}` (weir-server --help)")

    monitoring = text_of("docs/monitoring.md")
    for line in (ROOT / "dashboards/metric-names.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name = line.split()[0]
            if f"`{name}`" not in monitoring:
                errors.append(f"docs/monitoring.md does not describe `{name}` (dashboards/metric-names.txt)")
    for alert in re.findall(r"^\s*- alert:\s*(\S+)", (ROOT / "dashboards/alerts.yml").read_text(), re.M):
        if alert not in monitoring:
            errors.append(f"docs/monitoring.md does not describe alert {alert} (dashboards/alerts.yml)")

    api = text_of("docs/api.md")
    spec = json.loads((ROOT / "openapi/openapi.json").read_text())
    for path in spec["paths"]:
        if f"`{path}`" not in api and f" {path}`" not in api:
            errors.append(f"docs/api.md does not mention `{path}` (openapi/openapi.json)")

    index = text_of("docs/README.md")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"^## Documentation\s*$(.*?)(?=^## )", readme, re.M | re.S)
    doc_section = m.group(1) if m else ""
    if not m:
        errors.append('README.md has no "## Documentation" section')
    for p in sorted((ROOT / "docs").glob("*.md")):
        if p.name == "README.md":
            continue
        if f"({p.name})" not in index and f"({p.name}#" not in index:
            errors.append(f"docs/README.md does not link docs/{p.name}")
        if m and f"(docs/{p.name})" not in doc_section:
            errors.append(f'README.md "Documentation" does not link docs/{p.name}')
    return errors


# -------------------------------------------------------------------- run
class Server:
    def __init__(self, binary: str, work: Path):
        self.log_path = work / "server.log"
        self.log = open(self.log_path, "w")
        env = dict(os.environ, NO_COLOR="1")
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--data-dir", str(work / "data"), "--log-format", "text"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        self.addr = None
        deadline = time.time() + 20
        while time.time() < deadline and self.proc.poll() is None:
            text = re.sub(r"\x1b\[[0-9;]*m", "", self.log_path.read_text(errors="replace"))
            m = re.search(r"weir listening.* listen=(127\.0\.0\.1:\d+)", text)
            if m:
                self.addr = m.group(1)
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("weir-server did not report its address:\n" + self.log_path.read_text())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()

    def panics(self) -> list[str]:
        return [l for l in self.log_path.read_text(errors="replace").splitlines() if "panicked" in l]


def script_for(steps: list[tuple[Block, str]], addr: str, work: Path) -> str:
    out = [
        "set -euo pipefail",
        'trap \'echo "docs-check: command failed (exit $?) in $__BLOCK" >&2\' ERR',
        # `weir tail` without --count runs until Ctrl-C: a few seconds suffice.
        "weir() {",
        '  if [ "${1:-}" = tail ] && ! printf "%s\\n" "$@" | grep -qx -- --count; then',
        f'    local rc=0; timeout {TAIL_SECONDS} "$(type -P weir)" "$@" || rc=$?; [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]',
        '  else command weir "$@"; fi',
        "}",
    ]
    for n, (b, kind) in enumerate(steps):
        out.append(f"__BLOCK='{b.path}:{b.line}'")
        out.append(f"echo '=== {b.path}:{b.line}'")
        if kind == "body":
            _, method, path = b.marker.split()
            body = work / f"body-{n}.json"
            body.write_text(b.text)
            out.append(
                f"curl -X {method} 'http://{addr}{path}' -H 'content-type: application/json' "
                f"--data-binary @'{body}'; echo"
            )
        else:
            text = ADDRESS.sub(addr, b.text)
            kept = [l for l in text.splitlines() if not re.match(r"^\s*make\s", l)]
            out.append("\n".join(kept))
    out.append("echo '=== done'")
    return "\n".join(out) + "\n"


def run_page(name: str, steps: list[tuple[Block, str]], server_bin: str, cli_bin: str, keep: Path) -> tuple[bool, str]:
    work = Path(tempfile.mkdtemp(prefix="docs-check-", dir=keep))
    shim = work / "bin"
    shim.mkdir()
    (shim / "weir").symlink_to(cli_bin)
    (shim / "weir-server").symlink_to(server_bin)
    curl_home = work / "curl"
    curl_home.mkdir()
    (curl_home / ".curlrc").write_text("fail-with-body\nsilent\nshow-error\nmax-time = 70\n")
    server = Server(server_bin, work)
    try:
        cwd = work / "cwd"
        cwd.mkdir()
        script = work / "script.sh"
        script.write_text(script_for(steps, server.addr, work))
        env = dict(
            os.environ,
            PATH=f"{shim}:{os.environ.get('PATH', '')}",
            WEIR_SERVER=f"http://{server.addr}",
            CURL_HOME=str(curl_home),
            NO_COLOR="1",
        )
        env.pop("WEIR_TOKEN", None)
        log = work / "output.log"
        with open(log, "w") as out:
            try:
                proc = subprocess.run(["bash", str(script)], cwd=cwd, env=env, stdout=out,
                                      stderr=subprocess.STDOUT, timeout=PAGE_TIMEOUT_S, start_new_session=True)
                rc = proc.returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        panics = server.panics()
        ok = rc == 0 and not panics
        detail = ""
        if not ok:
            tail = log.read_text(errors="replace").splitlines()[-40:]
            detail = f"exit {rc}; output {log}\n" + "\n".join("       " + l for l in tail)
            if panics:
                detail += "\n       server panicked: " + panics[0]
        return ok, detail
    finally:
        server.stop()


def run_all(pages: dict[str, Page], server_bin: str, cli_bin: str, keep: Path, only: str | None) -> tuple[int, int]:
    passed = failed = 0
    jobs: list[tuple[str, list[tuple[Block, str]]]] = []
    for page in pages.values():
        if page.path == "README.md":
            continue
        steps = [(b, b.marker.split()[0]) for b in page.blocks if b.marker and b.marker.split()[0] in ("run", "body")]
        if steps:
            jobs.append((page.path, steps))
    readme = pages["README.md"]
    quick = [(b, "run") for b in readme.blocks if b.section == "Quick start" and b.lang in SHELL_LANGS]
    jobs.append(("README.md \"Quick start\" (curl and CLI)", quick))
    if not quick:
        print("FAIL - README.md has no sh blocks under \"## Quick start\"")
        failed += 1
    for name, steps in jobs:
        if only and only not in name:
            continue
        t0 = time.time()
        n_run = sum(1 for _, k in steps if k == "run")
        n_body = len(steps) - n_run
        ok, detail = run_page(name, steps, server_bin, cli_bin, keep)
        label = f"{name}: {n_run} blocks run, {n_body} request bodies sent ({time.time() - t0:.0f} s)"
        if ok:
            passed += 1
            print(f"ok   - {label}")
        else:
            failed += 1
            print(f"FAIL - {label}\n       {detail}")
        sys.stdout.flush()
    return passed, failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["links", "blocks", "drift", "run"])
    ap.add_argument("--server-bin")
    ap.add_argument("--cli-bin")
    ap.add_argument("--work", help="directory for the run's work dirs (kept)")
    ap.add_argument("--only", help="run only pages whose name contains this")
    args = ap.parse_args()
    pages = {p.relative_to(ROOT).as_posix(): parse(p) for p in md_files()}
    if args.what in ("links", "blocks", "drift"):
        if args.what == "links":
            errors = check_links(pages)
        elif args.what == "blocks":
            errors = check_blocks(pages)
        else:
            errors = check_drift(pages, args.server_bin)
        for e in errors:
            print(e)
        n_blocks = sum(len(p.blocks) for p in pages.values())
        print(f"{len(pages)} files, {n_blocks} code blocks, {len(errors)} problems")
        return 1 if errors else 0
    if not (args.server_bin and args.cli_bin):
        ap.error("run needs --server-bin and --cli-bin")
    keep = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="weir-docs-"))
    keep.mkdir(parents=True, exist_ok=True)
    passed, failed = run_all(pages, args.server_bin, args.cli_bin, keep, args.only)
    print(f"run: {passed} passed, {failed} failed")
    if failed == 0 and not args.work:
        shutil.rmtree(keep, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
