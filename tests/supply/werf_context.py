#!/usr/bin/env python3
"""The build context and build line of the image build files, read the way
werf reads them (tests/supply/run.sh drives it; Deckhouse's module CI builds
the images from these files, which nothing else here runs).

  werf_context.py spec FILE          JSON: {"from", "vars", "git": [{add, to,
                                     includePaths, excludePaths}], "shell":
                                     {stage: [lines]}, "build": <cargo line>}
                                     of the image with a `git` section
  werf_context.py assemble FILE DEST copy into DEST exactly the files the
                                     `git` entries add (DEST/<to>), from the
                                     files git knows of (tracked, and
                                     untracked but not ignored: work in
                                     progress builds as it will once
                                     committed); prints the file count

Template rendering is the subset these files use: comments, string
variables ({{- $x := "v" }}), {{ $x }}, {{ $.ModuleName }}, {{ $.ImageName }};
any other action is an error rather than a guess.

Path filters follow werf's git mapping: a path is added when it, or one of
its parent directories, matches an includePaths glob (or there are none) and
neither it nor a parent matches an excludePaths glob; `**` spans
directories (also none), `*` and `?` stay within one.

Run from the repository root.
"""
import json
import os
import re
import shutil
import subprocess
import sys

import yaml

MODULE = "pod-reloader"


def render(text, image):
    text = re.sub(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", "", text, flags=re.S)
    variables = {}

    def define(m):
        variables[m.group(1)] = m.group(2)
        return ""

    text = re.sub(r'^[ \t]*\{\{-?\s*\$(\w+)\s*:=\s*"([^"]*)"\s*-?\}\}[ \t]*\n?', define, text, flags=re.M)
    text = re.sub(r"\{\{-?\s*\$\.ModuleName\s*-?\}\}", MODULE, text)
    text = re.sub(r"\{\{-?\s*\$\.ImageName\s*-?\}\}", image, text)

    def use(m):
        if m.group(1) not in variables:
            sys.exit(f"template variable ${m.group(1)} is not defined")
        return variables[m.group(1)]

    text = re.sub(r"\{\{-?\s*\$(\w+)\s*-?\}\}", use, text)
    # Base-image lookups of the final images are not part of the build context.
    text = re.sub(r'\{\{\s*index \$\.Images "[^"]+" \| default "([^"]+)"\s*\}\}', r"\1", text)
    left = re.findall(r"\{\{.*?\}\}", text, flags=re.S)
    if left:
        sys.exit(f"template actions this reader does not evaluate: {left}")
    return text, variables


def spec(path):
    image = os.path.basename(os.path.dirname(path))
    with open(path, encoding="utf-8") as f:
        text, variables = render(f.read(), image)
    docs = [d for d in yaml.safe_load_all(text) if d]
    builders = [d for d in docs if d.get("git")]
    if len(builders) != 1:
        sys.exit(f"{path}: expected one image with a git section, found {len(builders)}")
    doc = builders[0]
    shell = {k: [str(x) for x in v or []] for k, v in (doc.get("shell") or {}).items()}
    builds = [line for lines in shell.values() for line in lines if re.search(r"\bcargo( auditable)? build\b", line)]
    if len(builds) != 1:
        sys.exit(f"{path}: expected one cargo build line, found {len(builds)}")
    return {
        "image": doc["image"],
        "from": doc.get("from") or doc.get("fromImage"),
        "vars": variables,
        "git": [
            {
                "add": g.get("add", "/"),
                "to": g["to"],
                "includePaths": g.get("includePaths") or [],
                "excludePaths": g.get("excludePaths") or [],
            }
            for g in doc["git"]
        ],
        "shell": shell,
        "build": builds[0],
    }


def glob_regex(glob):
    out, i = [], 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def matches(path, globs):
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    return any(g.match(p) for g in globs for p in prefixes)


def repo_files():
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True, capture_output=True,
    ).stdout.decode()
    return sorted({p for p in out.split("\0") if p and os.path.lexists(p)})


def assemble(path, dest):
    files = repo_files()
    count = 0
    for g in spec(path)["git"]:
        add = g["add"].strip("/")
        include = [glob_regex(p) for p in g["includePaths"]]
        exclude = [glob_regex(p) for p in g["excludePaths"]]
        for f in files:
            if add and not f.startswith(add + "/"):
                continue
            rel = f[len(add) + 1:] if add else f
            if include and not matches(rel, include):
                continue
            if matches(rel, exclude):
                continue
            target = os.path.join(dest, g["to"].strip("/"), rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(f, target, follow_symlinks=False)
            count += 1
    print(count)


def main(argv):
    if len(argv) == 3 and argv[1] == "spec":
        print(json.dumps(spec(argv[2]), sort_keys=True))
    elif len(argv) == 4 and argv[1] == "assemble":
        assemble(argv[2], argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
