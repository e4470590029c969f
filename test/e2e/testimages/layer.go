package testimages

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// epoch is the modification time of every entry and every image's created
// time, so that the same inputs always give the same digests.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// entry is one file system object of a layer.
type entry struct {
	mode     fs.FileMode // permission bits plus fs.ModeDir / ModeSymlink / ModeSetuid
	data     []byte      // regular files
	linkname string      // symlinks: target; hard links: absolute path in the layer
	hardlink bool
}

// tree is a layer's content keyed by absolute path. Parent directories are
// added implicitly (0755).
type tree map[string]entry

func (t tree) dir(p string, mode fs.FileMode) { t[p] = entry{mode: mode | fs.ModeDir} }

func (t tree) file(p string, mode fs.FileMode, data []byte) { t[p] = entry{mode: mode, data: data} }

func (t tree) link(p, target string) { t[p] = entry{linkname: target, hardlink: true} }

// layer serialises the tree as a reproducible tar layer: sorted paths (hard
// links after everything else), root-owned, one fixed mtime.
func (t tree) layer() (v1.Layer, error) {
	all := map[string]entry{}
	for p, e := range t {
		all[p] = e
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if _, ok := all[d]; !ok {
				if _, explicit := t[d]; !explicit {
					all[d] = entry{mode: 0o755 | fs.ModeDir}
				}
			}
		}
	}
	paths := make([]string, 0, len(all))
	for p := range all {
		paths = append(paths, p)
	}
	// Hard links go last: a link may only name a file written before it.
	sort.Slice(paths, func(i, j int) bool {
		li, lj := all[paths[i]].hardlink, all[paths[j]].hardlink
		if li != lj {
			return lj
		}
		return paths[i] < paths[j]
	})

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		e := all[p]
		if e.hardlink {
			// A link's header carries its target's mode: extractors apply it
			// to the shared inode.
			target, ok := all[e.linkname]
			if !ok {
				return nil, fmt.Errorf("hard link %s to %s: no such file in the layer", p, e.linkname)
			}
			e.mode = target.mode
		}
		h := &tar.Header{
			Name:    strings.TrimPrefix(p, "/"),
			Mode:    int64(e.mode.Perm()),
			ModTime: epoch,
			Format:  tar.FormatPAX,
		}
		if e.mode&fs.ModeSetuid != 0 {
			h.Mode |= 0o4000
		}
		if e.mode&fs.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
		switch {
		case e.hardlink:
			h.Typeflag = tar.TypeLink
			h.Linkname = strings.TrimPrefix(e.linkname, "/")
		case e.mode&fs.ModeSymlink != 0:
			h.Typeflag = tar.TypeSymlink
			h.Linkname = e.linkname
			h.Mode = 0o777
		case e.mode.IsDir():
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		default:
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar header %s: %w", p, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, fmt.Errorf("tar %s: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}
