package spec

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// resolveUser decides the container process's uid, gid and supplementary
// groups: run_as_user / run_as_username / run_as_group from the security
// context, else the image's USER, with names looked up in the image's
// /etc/passwd and /etc/group; supplementary groups per
// supplemental_groups_policy.
func resolveUser(rootfs string, sc *runtime.LinuxContainerSecurityContext, imageUser string) (specs.User, error) {
	db := userDB{rootfs: rootfs}
	var u specs.User
	var name string
	userSet := false
	switch {
	case sc.GetRunAsUser() != nil:
		u.UID = uint32(sc.GetRunAsUser().GetValue())
		userSet = true
		if e, ok, err := db.passwdByUID(u.UID); err != nil {
			return u, err
		} else if ok {
			u.GID, name = e.gid, e.name
		}
	case sc.GetRunAsUsername() != "":
		e, ok, err := db.passwdByName(sc.GetRunAsUsername())
		if err != nil {
			return u, err
		}
		if !ok {
			return u, fmt.Errorf("linux.security_context.run_as_username %q is not in the image's /etc/passwd: %w",
				sc.GetRunAsUsername(), errdefs.ErrInvalidArgument)
		}
		u.UID, u.GID, name = e.uid, e.gid, e.name
		userSet = true
	default:
		var err error
		if u, name, err = db.parseImageUser(imageUser); err != nil {
			return u, err
		}
	}
	if g := sc.GetRunAsGroup(); g != nil {
		if !userSet {
			return u, fmt.Errorf("linux.security_context.run_as_group needs run_as_user or run_as_username: %w", errdefs.ErrInvalidArgument)
		}
		u.GID = uint32(g.GetValue())
	}
	// Merge (the default) adds the groups the image's /etc/group gives
	// the user; Strict only the ones the security context names.
	var groups []uint32
	if sc.GetSupplementalGroupsPolicy() != runtime.SupplementalGroupsPolicy_Strict {
		var err error
		if groups, err = db.groupsOf(name); err != nil {
			return u, err
		}
	}
	for _, g := range sc.GetSupplementalGroups() {
		groups = append(groups, uint32(g))
	}
	// The primary group comes first among the additional ones, as
	// containerd and CRI-O set it: workloads see it in getgroups(2), and
	// the status reports exactly this list.
	u.AdditionalGids = []uint32{u.GID}
	for _, g := range groups {
		if !containsGID(u.AdditionalGids, g) {
			u.AdditionalGids = append(u.AdditionalGids, g)
		}
	}
	return u, nil
}

func containsGID(gs []uint32, g uint32) bool {
	for _, x := range gs {
		if x == g {
			return true
		}
	}
	return false
}

type passwdEntry struct {
	name     string
	uid, gid uint32
}

// userDB reads /etc/passwd and /etc/group inside a root file system,
// resolving symlinks within it so an image cannot point them at the host.
type userDB struct{ rootfs string }

func (db userDB) lines(file string) ([][]string, error) {
	if db.rootfs == "" {
		return nil, nil
	}
	p, err := securejoin.SecureJoin(db.rootfs, file)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out, sc.Err()
}

func (db userDB) passwd(match func(passwdEntry) bool) (passwdEntry, bool, error) {
	lines, err := db.lines("/etc/passwd")
	if err != nil {
		return passwdEntry{}, false, err
	}
	for _, f := range lines {
		if len(f) < 4 {
			continue
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		e := passwdEntry{name: f[0], uid: uint32(uid), gid: uint32(gid)}
		if match(e) {
			return e, true, nil
		}
	}
	return passwdEntry{}, false, nil
}

func (db userDB) passwdByUID(uid uint32) (passwdEntry, bool, error) {
	return db.passwd(func(e passwdEntry) bool { return e.uid == uid })
}

func (db userDB) passwdByName(name string) (passwdEntry, bool, error) {
	return db.passwd(func(e passwdEntry) bool { return e.name == name })
}

func (db userDB) groupByName(name string) (uint32, bool, error) {
	lines, err := db.lines("/etc/group")
	if err != nil {
		return 0, false, err
	}
	for _, f := range lines {
		if len(f) >= 3 && f[0] == name {
			gid, err := strconv.ParseUint(f[2], 10, 32)
			if err == nil {
				return uint32(gid), true, nil
			}
		}
	}
	return 0, false, nil
}

// groupsOf lists the gids of the groups that name user as a member.
func (db userDB) groupsOf(user string) ([]uint32, error) {
	if user == "" {
		return nil, nil
	}
	lines, err := db.lines("/etc/group")
	if err != nil {
		return nil, err
	}
	var out []uint32
	for _, f := range lines {
		if len(f) < 4 {
			continue
		}
		for _, m := range strings.Split(f[3], ",") {
			if m == user {
				if gid, err := strconv.ParseUint(f[2], 10, 32); err == nil {
					out = append(out, uint32(gid))
				}
			}
		}
	}
	return out, nil
}

// parseImageUser resolves the image's USER: "", "uid", "name", each with an
// optional ":gid" or ":group".
func (db userDB) parseImageUser(s string) (specs.User, string, error) {
	var u specs.User
	if s == "" {
		return u, "root", nil
	}
	userPart, groupPart, hasGroup := strings.Cut(s, ":")
	var name string
	if uid, err := strconv.ParseUint(userPart, 10, 32); err == nil {
		u.UID = uint32(uid)
		if e, ok, err := db.passwdByUID(u.UID); err != nil {
			return u, "", err
		} else if ok {
			u.GID, name = e.gid, e.name
		}
	} else {
		e, ok, err := db.passwdByName(userPart)
		if err != nil {
			return u, "", err
		}
		if !ok {
			return u, "", fmt.Errorf("image user %q is not in the image's /etc/passwd: %w", userPart, errdefs.ErrFailedPrecondition)
		}
		u.UID, u.GID, name = e.uid, e.gid, e.name
	}
	if hasGroup {
		if gid, err := strconv.ParseUint(groupPart, 10, 32); err == nil {
			u.GID = uint32(gid)
		} else {
			gid, ok, err := db.groupByName(groupPart)
			if err != nil {
				return u, "", err
			}
			if !ok {
				return u, "", fmt.Errorf("image group %q is not in the image's /etc/group: %w", groupPart, errdefs.ErrFailedPrecondition)
			}
			u.GID = gid
		}
	}
	return u, name, nil
}
