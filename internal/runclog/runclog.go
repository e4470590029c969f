// Package runclog reads runc's JSON log (--log-format json), where runc
// explains failures better than its exit status does.
package runclog

import (
	"bufio"
	"encoding/json"
	"os"
)

// LastError returns the message of the last error-level entry in the log
// at path, or "" when there is none.
func LastError(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	msg := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct{ Level, Msg string }
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Level == "error" {
			msg = e.Msg
		}
	}
	return msg
}
