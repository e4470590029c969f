#!/bin/sh
# Prints berth's version for the Makefile's -ldflags: the tag at HEAD
# (vX.Y.Z) for a clean release checkout, else v<Next>-dev+<commit>[.dirty]
# (Next from internal/version), and v<Next>-dev outside git. Always semver.
cd "$(dirname "$0")/.." || exit 1
next=$(sed -n 's/^const Next = "\(.*\)"$/\1/p' internal/version/version.go)
if ! commit=$(git rev-parse --short=12 HEAD 2>/dev/null); then
	echo "v$next-dev"
	exit 0
fi
dirty=
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	dirty=.dirty
fi
if tag=$(git describe --tags --exact-match --match 'v[0-9]*.[0-9]*.[0-9]*' 2>/dev/null) && [ -z "$dirty" ]; then
	echo "$tag"
	exit 0
fi
echo "v$next-dev+$commit$dirty"
