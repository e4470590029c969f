// Package netconf finds the pod network's CNI configuration and tells whether
// it can be used: a loadable config in the config directory whose every
// plugin binary is present. The daemon's NetworkReady condition is this
// probe's answer, evaluated on each Status call so that a config dropped in
// later is picked up without a restart.
package netconf

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
)

// Reasons reported in the NetworkReady condition when it is false.
const (
	ReasonNoConfig      = "NetworkPluginNotReady"
	ReasonMissingPlugin = "NetworkPluginMissing"
)

// Result is what Probe found.
type Result struct {
	Ready bool
	// Reason and Message explain why the network is not ready.
	Reason  string
	Message string
	// File and Network name the config that was chosen, when one was.
	File    string
	Network string
	Plugins []string
}

// Probe looks for the first loadable network config in confDir, in lexical
// order as libcni lists them, and checks that every plugin it names exists in
// one of binDirs.
func Probe(confDir string, binDirs []string) Result {
	files, err := libcni.ConfFiles(confDir, []string{".conf", ".conflist", ".json"})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return notReady(ReasonNoConfig, fmt.Sprintf("cni config dir %s: %v", confDir, err))
	}
	if len(files) == 0 {
		return notReady(ReasonNoConfig, fmt.Sprintf("no network config found in %s", confDir))
	}
	var loadErrs []string
	for _, file := range files {
		list, err := load(file)
		if err != nil {
			loadErrs = append(loadErrs, fmt.Sprintf("%s: %v", filepath.Base(file), err))
			continue
		}
		r := Result{File: file, Network: list.Name}
		var missing []string
		for _, p := range list.Plugins {
			r.Plugins = append(r.Plugins, p.Network.Type)
			if _, err := invoke.FindInPath(p.Network.Type, binDirs); err != nil {
				missing = append(missing, p.Network.Type)
			}
		}
		if len(missing) > 0 {
			r.Reason = ReasonMissingPlugin
			r.Message = fmt.Sprintf("network %q (%s) needs CNI plugins %s, not found in %s",
				list.Name, file, strings.Join(missing, ", "), strings.Join(binDirs, ":"))
			return r
		}
		r.Ready = true
		return r
	}
	return notReady(ReasonNoConfig, fmt.Sprintf("no loadable network config in %s: %s", confDir, strings.Join(loadErrs, "; ")))
}

func notReady(reason, msg string) Result {
	return Result{Reason: reason, Message: msg}
}

// load reads a .conflist, or a single-plugin .conf/.json wrapped as a list.
func load(file string) (*libcni.NetworkConfigList, error) {
	if strings.HasSuffix(file, ".conflist") {
		return libcni.ConfListFromFile(file)
	}
	conf, err := libcni.ConfFromFile(file)
	if err != nil {
		return nil, err
	}
	if conf.Network.Type == "" {
		return nil, errors.New("no plugin type (a .conflist in a .conf file?)")
	}
	return libcni.ConfListFromConf(conf)
}
