// Command testbin is a static multi-call binary baked into berth's test
// images. It provides the programs critest runs inside containers that
// Debian's busybox lacks or cannot imitate: it dispatches on the name it was
// run as, like busybox.
//
//	nginx       stands in for nginx: PID-1 title "nginx: master process nginx -g daemon off;",
//	            /var/run/nginx.pid, and a web server (busybox httpd) on the port in $NGINX_PORT (80)
//	nonewprivs  installed setuid root; prints "Effective uid: N"
//	pgrep       prints the PIDs whose comm matches a regular expression
//	ipcs        lists SysV shared memory segments (ipcs -m)
//	pause       sleeps until SIGTERM or SIGINT, reaping children, like the pause image
package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/berth-cri/berth/internal/pause"
)

func main() {
	name := filepath.Base(os.Args[0])
	if strings.HasPrefix(name, "nginx") {
		name = "nginx"
	}
	var err error
	switch name {
	case "nginx":
		err = nginx()
	case "nonewprivs":
		fmt.Printf("Effective uid: %d\n", os.Geteuid())
	case "pgrep":
		err = pgrep(os.Args[1:])
	case "ipcs":
		err = ipcs()
	case "pause":
		pause.Run(nil)
	default:
		err = fmt.Errorf("testbin: unknown program %q", name)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// masterTitle is the process title real nginx gives its master process.
const masterTitle = "nginx: master process nginx -g daemon off;"

// nginx re-executes itself with nginx's master-process title as argv[0], so
// /proc/self/cmdline reads as nginx's does, then runs busybox httpd as its
// worker and forwards termination signals to it.
func nginx() error {
	if os.Args[0] != masterTitle {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		return syscall.Exec(self, []string{masterTitle}, os.Environ())
	}
	if err := os.WriteFile("/var/run/nginx.pid", []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	port := os.Getenv("NGINX_PORT")
	if port == "" {
		port = "80"
	}
	fmt.Println("nginx: serving /usr/share/nginx/html on port", port)
	worker := exec.Command("/bin/httpd", "-f", "-v", "-p", port, "-h", "/usr/share/nginx/html")
	worker.Stdout, worker.Stderr = os.Stdout, os.Stderr
	if err := worker.Start(); err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
	go func() {
		for s := range sigs {
			_ = worker.Process.Signal(s)
		}
	}()
	return worker.Wait()
}

// pgrep prints the PIDs of processes whose comm matches the pattern, and
// fails when none does, as procps pgrep does.
func pgrep(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: pgrep PATTERN")
	}
	re, err := regexp.Compile(args[0])
	if err != nil {
		return err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	found := false
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil {
			continue
		}
		if re.MatchString(strings.TrimSpace(string(comm))) {
			fmt.Println(pid)
			found = true
		}
	}
	if !found {
		os.Exit(1)
	}
	return nil
}

// ipcs prints the shared memory segments from /proc/sysvipc/shm in the
// layout of util-linux `ipcs -m`.
func ipcs() error {
	f, err := os.Open("/proc/sysvipc/shm")
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Println("\n------ Shared Memory Segments --------")
	fmt.Println("key        shmid      owner      perms      bytes      nattch     status")
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// key shmid perms size cpid lpid nattch uid gid ...
		fl := strings.Fields(sc.Text())
		if len(fl) < 8 {
			continue
		}
		key, _ := strconv.ParseInt(fl[0], 10, 64)
		perms, _ := strconv.ParseInt(fl[2], 10, 64)
		fmt.Printf("0x%08x %-10s %-10s %-10o %-10s %-10s\n", uint32(key), fl[1], fl[7], perms&0o777, fl[3], fl[6])
	}
	return sc.Err()
}
