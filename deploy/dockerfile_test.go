package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// instruction is one Dockerfile instruction, its continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
	line int
}

// stage is a build stage: its FROM and what follows it.
type stage struct {
	image, name string
	from        instruction
	body        []instruction
}

// parseDockerfile splits a Dockerfile into instructions and stages.
// Instructions before the first FROM (ARG) are returned in pre.
func parseDockerfile(src string) (pre []instruction, stages []stage, err error) {
	var cur *instruction
	var all []instruction
	for i, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if cur == nil && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur != nil && strings.HasPrefix(trimmed, "#") {
			continue // a comment inside a continued instruction
		}
		cont := strings.HasSuffix(trimmed, `\`)
		text := strings.TrimSuffix(trimmed, `\`)
		if cur == nil {
			cmd, args, _ := strings.Cut(text, " ")
			cur = &instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: i + 1}
		} else {
			cur.args = strings.TrimSpace(cur.args + " " + strings.TrimSpace(text))
		}
		if !cont {
			all = append(all, *cur)
			cur = nil
		}
	}
	if cur != nil {
		return nil, nil, fmt.Errorf("line %d: the last instruction ends with a line continuation", cur.line)
	}
	for _, in := range all {
		if in.cmd == "FROM" {
			fields := strings.Fields(in.args)
			var words []string
			for _, f := range fields {
				if !strings.HasPrefix(f, "--") {
					words = append(words, f)
				}
			}
			if len(words) == 0 {
				return nil, nil, fmt.Errorf("line %d: FROM names no image", in.line)
			}
			st := stage{image: words[0], from: in}
			if len(words) == 3 && strings.EqualFold(words[1], "AS") {
				st.name = words[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			pre = append(pre, in)
			continue
		}
		stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
	}
	if len(stages) == 0 {
		return nil, nil, fmt.Errorf("no FROM")
	}
	return pre, stages, nil
}

var (
	digestRef    = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)
	exactVersion = regexp.MustCompile(`^v?\d+\.\d+\.\d+([.-][0-9A-Za-z.-]+)?$`)
)

// patchedBases are, for each base image and release line, the first release
// with every security fix published as of the date given: a base older than
// that is a release behind its security fixes. Update an entry when a line
// gets a security release (and the Dockerfiles with it).
var patchedBases = []struct {
	image, line, first, source string
}{
	// Node.js security releases of 2026-06-18 (22.23.0, 24.17.0, 26.3.1),
	// the latest found on 2026-12-03; check
	// https://nodejs.org/en/blog/vulnerability before a release. The
	// executor image takes the newest patch of its line (22.23.3, published
	// 2026-09-24), not just this floor.
	{"node", "22", "22.23.0", "Node.js security release of 2026-06-18"},
	{"node", "24", "24.17.0", "Node.js security release of 2026-06-18"},
	// The toolchain sandrun is built and tested with on 2026-12-03 (go
	// version); check https://go.dev/doc/devel/release before a release.
	{"golang", "1.26", "1.26.8", "Go 1.26.8, the toolchain sandrun is tested with"},
}

// checkPatched reports base images pinned by tag to a release older than
// the first one of its line with the known security fixes, or from a line
// patchedBases does not know. A digest pin is checked by its review, not
// here.
func checkPatched(stages []stage) []string {
	var problems []string
	for _, st := range stages {
		if st.image == "scratch" || digestRef.MatchString(st.image) {
			continue
		}
		ref := st.image[strings.LastIndex(st.image, "/")+1:]
		name, tag, ok := strings.Cut(ref, ":")
		if !ok || !exactVersion.MatchString(tag) {
			continue // checkPinned reports it
		}
		version, _, _ := strings.Cut(strings.TrimPrefix(tag, "v"), "-")
		known := false
		for _, p := range patchedBases {
			if p.image != name || !strings.HasPrefix(version, p.line+".") {
				continue
			}
			known = true
			if compareVersions(version, p.first) < 0 {
				problems = append(problems, fmt.Sprintf("line %d: base image %s is older than %s %s (%s): update it", st.from.line, st.image, name, p.first, p.source))
			}
		}
		if !known {
			problems = append(problems, fmt.Sprintf("line %d: base image %s: no release line of %s %s in patchedBases: record its first release with the latest security fixes", st.from.line, st.image, name, version))
		}
	}
	return problems
}

// compareVersions compares dotted numeric versions.
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x - y
		}
	}
	return 0
}

// checkPinned reports base images (FROM, and COPY --from an image) that
// are neither pinned by digest nor by an exact version tag (x.y.z).
func checkPinned(stages []stage) []string {
	var problems []string
	names := map[string]bool{}
	pinned := func(image string, line int, what string) {
		switch {
		case image == "scratch" || names[image]:
		case strings.Contains(image, "$"):
			problems = append(problems, fmt.Sprintf("line %d: %s %s is set by a build argument: pin it in the Dockerfile", line, what, image))
		case digestRef.MatchString(image):
		default:
			ref := image[strings.LastIndex(image, "/")+1:]
			_, tag, ok := strings.Cut(ref, ":")
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("line %d: %s %s has no tag (it means latest): pin a digest or an exact version", line, what, image))
			case !exactVersion.MatchString(tag):
				problems = append(problems, fmt.Sprintf("line %d: %s %s: tag %q is not an exact version (x.y.z): pin a digest or an exact version", line, what, image, tag))
			}
		}
	}
	for i, st := range stages {
		pinned(st.image, st.from.line, "base image")
		for _, in := range st.body {
			if in.cmd != "COPY" {
				continue
			}
			for _, f := range strings.Fields(in.args) {
				if from, ok := strings.CutPrefix(f, "--from="); ok {
					if _, err := strconv.Atoi(from); err == nil {
						continue // a stage index
					}
					pinned(from, in.line, "COPY --from image")
				}
			}
		}
		if st.name != "" {
			names[st.name] = true
		}
		names[strconv.Itoa(i)] = true
	}
	return problems
}

// checkUser reports a final stage that runs as root: it must end with a
// USER that is neither root nor uid 0, and uid wantUID when that is set.
func checkUser(stages []stage, wantUID string) []string {
	final := stages[len(stages)-1]
	user := ""
	line := final.from.line
	for _, in := range final.body {
		if in.cmd == "USER" {
			user, line = in.args, in.line
		}
	}
	if user == "" {
		return []string{fmt.Sprintf("line %d: the final stage sets no USER, so it runs as root", line)}
	}
	name, _, _ := strings.Cut(user, ":")
	if name == "root" || name == "0" {
		return []string{fmt.Sprintf("line %d: USER %s is root", line, user)}
	}
	if wantUID != "" && name != wantUID {
		return []string{fmt.Sprintf("line %d: USER %s: want uid %s", line, user, wantUID)}
	}
	return nil
}

// checkEntrypoint reports a final stage without an exec-form ENTRYPOINT:
// the shell form would make /bin/sh PID 1, which does not pass SIGTERM on.
func checkEntrypoint(stages []stage) []string {
	last, argv := entrypoint(stages[len(stages)-1])
	if last == nil {
		return []string{"the final stage has no ENTRYPOINT"}
	}
	if len(argv) == 0 {
		return []string{fmt.Sprintf("line %d: ENTRYPOINT %s is not in exec form ([\"program\", ...])", last.line, last.args)}
	}
	return nil
}

// entrypoint returns a stage's ENTRYPOINT, the last one as Docker takes
// it, with its argv when it is in exec form; nil if there is none.
func entrypoint(st stage) (*instruction, []string) {
	var last *instruction
	for i := range st.body {
		if st.body[i].cmd == "ENTRYPOINT" {
			last = &st.body[i]
		}
	}
	if last == nil {
		return nil, nil
	}
	var argv []string
	if json.Unmarshal([]byte(last.args), &argv) != nil {
		return last, nil
	}
	return last, argv
}

var (
	secretName    = regexp.MustCompile(`(?i)(secret|token|passw|api_?key|private_?key|credential|access_?key)`)
	secretSource  = regexp.MustCompile(`(?i)(\.pem$|\.key$|\.p12$|id_rsa|id_ed25519|\.env$|credentials.*\.json$|service-account.*\.json$|\.tfvars$|\.tfstate$)`)
	secretContent = []*regexp.Regexp{
		regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----`),
		regexp.MustCompile(`AKIA[0-9A-Z]{16}`),
		regexp.MustCompile(`AIza[0-9A-Za-z_-]{35}`),
		regexp.MustCompile(`"type":\s*"service_account"`),
		regexp.MustCompile(`gh[pousr]_[0-9A-Za-z]{36}`),
	}
)

// checkSecrets reports what would put a secret in an image: build
// arguments or environment variables named like secrets (their values stay
// in the image's history), copied key or credential files, remote ADDs,
// and keys written into the Dockerfile itself.
func checkSecrets(src string, pre []instruction, stages []stage) []string {
	var problems []string
	all := append([]instruction(nil), pre...)
	for _, st := range stages {
		all = append(all, st.body...)
	}
	for _, in := range all {
		switch in.cmd {
		case "ARG", "ENV":
			for _, f := range strings.Fields(in.args) {
				name, _, _ := strings.Cut(f, "=")
				if secretName.MatchString(name) {
					problems = append(problems, fmt.Sprintf("line %d: %s %s looks like a secret: it would stay in the image's history", in.line, in.cmd, name))
				}
			}
			if strings.Contains(in.args, "GOOGLE_APPLICATION_CREDENTIALS") {
				problems = append(problems, fmt.Sprintf("line %d: %s sets GOOGLE_APPLICATION_CREDENTIALS: Cloud Run gives the service account's token through the metadata server", in.line, in.cmd))
			}
		case "COPY", "ADD":
			fields := strings.Fields(in.args)
			for _, f := range fields[:max(len(fields)-1, 0)] {
				if strings.HasPrefix(f, "--") {
					continue
				}
				if secretSource.MatchString(f) {
					problems = append(problems, fmt.Sprintf("line %d: %s %s copies what looks like a key or credentials", in.line, in.cmd, f))
				}
				if in.cmd == "ADD" && (strings.HasPrefix(f, "http://") || strings.HasPrefix(f, "https://")) {
					problems = append(problems, fmt.Sprintf("line %d: ADD %s downloads without a checksum: use RUN curl with a verified digest", in.line, f))
				}
			}
		}
	}
	for _, re := range secretContent {
		if loc := re.FindStringIndex(src); loc != nil {
			problems = append(problems, fmt.Sprintf("line %d: the Dockerfile holds what looks like a key (%s)", strings.Count(src[:loc[0]], "\n")+1, re))
		}
	}
	return problems
}

// checkStatic reports a dispatcher or reaper image that is not a static
// binary on a minimal base, built in a stage of its own.
func checkStatic(stages []stage) []string {
	var problems []string
	if len(stages) < 2 {
		problems = append(problems, "not multi-stage: the final image would hold the Go toolchain")
	}
	final := stages[len(stages)-1]
	if final.image != "scratch" && !strings.HasPrefix(final.image, "gcr.io/distroless/static") {
		problems = append(problems, fmt.Sprintf("line %d: final base %s is not minimal (scratch or distroless/static)", final.from.line, final.image))
	}
	static := false
	for _, st := range stages[:len(stages)-1] {
		for _, in := range st.body {
			static = static || (in.cmd == "RUN" && strings.Contains(in.args, "CGO_ENABLED=0") && strings.Contains(in.args, "go build"))
		}
	}
	if !static {
		problems = append(problems, "no stage builds with CGO_ENABLED=0: the binary would need a libc the final base lacks")
	}
	return problems
}

// checkSandbox reports a sandbox image that lacks what agents' commands
// expect, or keeps apt's caches.
func checkSandbox(pre []instruction, stages []stage) []string {
	final := stages[len(stages)-1]
	var problems []string
	if !strings.HasPrefix(final.image, "node:") {
		problems = append(problems, fmt.Sprintf("final base %s does not provide Node.js", final.image))
	}
	args := map[string]string{}
	for _, in := range append(append([]instruction(nil), pre...), final.body...) {
		if in.cmd == "ARG" {
			k, v, _ := strings.Cut(in.args, "=")
			args[k] = v
		}
	}
	var installed []string
	for _, in := range final.body {
		if in.cmd != "RUN" || !strings.Contains(in.args, "apt-get install") {
			continue
		}
		if !strings.Contains(in.args, "--no-install-recommends") {
			problems = append(problems, fmt.Sprintf("line %d: apt-get install without --no-install-recommends", in.line))
		}
		if !strings.Contains(in.args, "rm -rf /var/lib/apt/lists/*") {
			problems = append(problems, fmt.Sprintf("line %d: apt's package lists stay in the image", in.line))
		}
		_, after, _ := strings.Cut(in.args, "apt-get install")
		cmd, _, _ := strings.Cut(after, "&&")
		for _, f := range strings.Fields(cmd) {
			if name, ok := strings.CutPrefix(f, "${"); ok {
				f = args[strings.TrimSuffix(name, "}")]
			}
			installed = append(installed, strings.Fields(f)...)
		}
	}
	for _, want := range []string{"bash", "coreutils", "git", "curl", "python3", "build-essential"} {
		if !slices.Contains(installed, want) {
			problems = append(problems, fmt.Sprintf("the sandbox does not install %s", want))
		}
	}
	// Commands run as uid 1000 and must stay there: setuid and setgid
	// programs are stripped after the last install.
	lastInstall, stripped := -1, -1
	for i, in := range final.body {
		if in.cmd == "RUN" && strings.Contains(in.args, "apt-get install") {
			lastInstall = i
		}
		if in.cmd == "RUN" && strings.Contains(in.args, "-perm /6000") && strings.Contains(in.args, "chmod a-s") {
			stripped = i
		}
	}
	if stripped < lastInstall {
		problems = append(problems, "the sandbox keeps its setuid and setgid programs (want RUN find / -xdev -perm /6000 -type f -exec chmod a-s {} + after the last install)")
	}
	// The executor is the entrypoint itself: a process started before it (an init
	// such as tini) would hold the launch's host token in an environment
	// that the commands, of the same uid, could read.
	if in, argv := entrypoint(final); len(argv) > 0 && (len(argv) > 1 || path.Base(argv[0]) != "executor") {
		problems = append(problems, fmt.Sprintf("line %d: ENTRYPOINT %s: the executor must be the entrypoint, with nothing before it", in.line, in.args))
	}
	return problems
}

// dockerfiles are the images and what each must be.
var dockerfiles = []struct {
	file    string
	program string
	uid     string // the uid the final stage must run as; "" for any non-root
	static  bool   // a static binary on a minimal base
	sandbox bool   // the executor's sandbox
}{
	{file: "dispatcher.Dockerfile", program: "dispatcher", static: true},
	{file: "reaper.Dockerfile", program: "reaper", static: true},
	{file: "executor.Dockerfile", program: "executor", uid: "1000", sandbox: true},
}

func check(src, uid string, static, sandbox bool) ([]string, error) {
	pre, stages, err := parseDockerfile(src)
	if err != nil {
		return nil, err
	}
	problems := checkPinned(stages)
	problems = append(problems, checkUser(stages, uid)...)
	problems = append(problems, checkEntrypoint(stages)...)
	problems = append(problems, checkPatched(stages)...)
	problems = append(problems, checkSecrets(src, pre, stages)...)
	if static {
		problems = append(problems, checkStatic(stages)...)
	}
	if sandbox {
		problems = append(problems, checkSandbox(pre, stages)...)
	}
	return problems, nil
}

func TestDockerfiles(t *testing.T) {
	for _, df := range dockerfiles {
		t.Run(df.file, func(t *testing.T) {
			src, err := os.ReadFile(df.file)
			if err != nil {
				t.Fatal(err)
			}
			problems, err := check(string(src), df.uid, df.static, df.sandbox)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				t.Error(p)
			}
			if !strings.Contains(string(src), "./cmd/"+df.program) {
				t.Errorf("does not build ./cmd/%s", df.program)
			}
		})
	}
}

// TestDockerignore checks that each Dockerfile's ignore file keeps the
// repository's history and any Terraform state or credentials out of the
// build context.
func TestDockerignore(t *testing.T) {
	for _, df := range dockerfiles {
		t.Run(df.file, func(t *testing.T) {
			src, err := os.ReadFile(df.file + ".dockerignore")
			if err != nil {
				t.Fatalf("BuildKit reads %s.dockerignore for %s: %v", df.file, df.file, err)
			}
			lines := strings.Split(string(src), "\n")
			for _, want := range []string{".git", "**/*.tfstate", "**/*.tfvars", "**/.terraform", "**/.env", "**/*.pem"} {
				if !slices.Contains(lines, want) {
					t.Errorf("does not exclude %s", want)
				}
			}
		})
	}
}

// TestChecksFindMistakes shows each check failing on a broken Dockerfile.
func TestChecksFindMistakes(t *testing.T) {
	const good = "FROM golang:1.26.8 AS build\nRUN CGO_ENABLED=0 go build -o /out/x ./cmd/x\nFROM scratch\nCOPY --from=build /out/x /x\nUSER 65532:65532\nENTRYPOINT [\"/x\"]\n"
	tests := []struct {
		name, src, want string
		uid             string
		static, sandbox bool
	}{
		{name: "valid", src: good, static: true},
		{name: "no tag", src: strings.Replace(good, "golang:1.26.8", "golang", 1), want: "has no tag (it means latest)"},
		{name: "latest", src: strings.Replace(good, "golang:1.26.8", "golang:latest", 1), want: `tag "latest" is not an exact version`},
		{name: "minor only", src: strings.Replace(good, "golang:1.26.8", "golang:1.26", 1), want: `tag "1.26" is not an exact version`},
		{name: "a release behind its security fixes", src: strings.Replace(good, "golang:1.26.8", "golang:1.26.7", 1), want: "base image golang:1.26.7 is older than golang 1.26.8"},
		{name: "node behind its security fixes", src: strings.Replace(good, "golang:1.26.8", "node:22.12.0-bookworm-slim", 1), want: "base image node:22.12.0-bookworm-slim is older than node 22.23.0"},
		{name: "unknown release line", src: strings.Replace(good, "golang:1.26.8", "golang:1.27.0", 1), want: "no release line of golang 1.27.0 in patchedBases"},
		{name: "digest", src: strings.Replace(good, "golang:1.26.8", "golang@sha256:"+strings.Repeat("ab", 32), 1)},
		{name: "build argument", src: "ARG BASE=golang:1.26.8\n" + strings.Replace(good, "golang:1.26.8", "${BASE}", 1), want: "is set by a build argument"},
		{name: "copy from image", src: strings.Replace(good, "COPY --from=build", "COPY --from=alpine", 1), want: "COPY --from image alpine has no tag"},
		{name: "no user", src: strings.Replace(good, "USER 65532:65532\n", "", 1), want: "sets no USER, so it runs as root"},
		{name: "root user", src: strings.Replace(good, "USER 65532:65532", "USER root", 1), want: "USER root is root"},
		{name: "uid 0", src: strings.Replace(good, "USER 65532:65532", "USER 0:0", 1), want: "USER 0:0 is root"},
		{name: "root again", src: strings.Replace(good, "ENTRYPOINT", "USER 0\nENTRYPOINT", 1), want: "USER 0 is root"},
		{name: "other uid", src: good, uid: "1000", want: "USER 65532:65532: want uid 1000"},
		{name: "shell entrypoint", src: strings.Replace(good, `["/x"]`, "/x --flag", 1), want: "is not in exec form"},
		{name: "no entrypoint", src: strings.Replace(good, "ENTRYPOINT [\"/x\"]\n", "", 1), want: "has no ENTRYPOINT"},
		{name: "secret arg", src: strings.Replace(good, "FROM scratch", "FROM scratch\nARG GITHUB_TOKEN", 1), want: "ARG GITHUB_TOKEN looks like a secret"},
		{name: "secret env", src: strings.Replace(good, "FROM scratch", "FROM scratch\nENV DB_PASSWORD=hunter2", 1), want: "ENV DB_PASSWORD looks like a secret"},
		{name: "credentials env", src: strings.Replace(good, "FROM scratch", "FROM scratch\nENV GOOGLE_APPLICATION_CREDENTIALS=/k.json", 1), want: "sets GOOGLE_APPLICATION_CREDENTIALS"},
		{name: "key file", src: strings.Replace(good, "FROM scratch", "FROM scratch\nCOPY deploy/key.pem /key.pem", 1), want: "COPY deploy/key.pem copies what looks like a key"},
		{name: "service account key", src: strings.Replace(good, "FROM scratch", "FROM scratch\nCOPY sa-credentials.json /etc/", 1), want: "copies what looks like a key or credentials"},
		{name: "remote add", src: strings.Replace(good, "FROM scratch", "FROM scratch\nADD https://example.com/x.tar.gz /x", 1), want: "downloads without a checksum"},
		{name: "private key inline", src: good + "# -----BEGIN RSA PRIVATE KEY-----\n", want: "holds what looks like a key"},
		{name: "api key inline", src: good + "# AIza" + strings.Repeat("x", 35) + "\n", want: "holds what looks like a key"},
		{name: "single stage", src: "FROM golang:1.26.8\nRUN CGO_ENABLED=0 go build ./cmd/x\nUSER 1\nENTRYPOINT [\"/x\"]\n", static: true, want: "not multi-stage"},
		{name: "fat base", src: strings.Replace(good, "FROM scratch", "FROM debian:12.8", 1), static: true, want: "is not minimal"},
		{name: "cgo", src: strings.Replace(good, "CGO_ENABLED=0 ", "", 1), static: true, want: "no stage builds with CGO_ENABLED=0"},
		{name: "sandbox without tools", src: "FROM node:22.23.0-bookworm-slim\nRUN apt-get update && apt-get install -y git && rm -rf /var/lib/apt/lists/*\nRUN find / -xdev -perm /6000 -type f -exec chmod a-s {} +\nUSER 1000\nENTRYPOINT [\"/usr/local/bin/executor\"]\n", uid: "1000", sandbox: true, want: "does not install python3"},
		{name: "sandbox recommends", src: "FROM node:22.23.0-bookworm-slim\nRUN apt-get install -y bash coreutils git curl python3 build-essential && rm -rf /var/lib/apt/lists/*\nRUN find / -xdev -perm /6000 -type f -exec chmod a-s {} +\nUSER 1000\nENTRYPOINT [\"/usr/local/bin/executor\"]\n", uid: "1000", sandbox: true, want: "without --no-install-recommends"},
		{name: "sandbox toolchain from an argument", src: "FROM node:22.23.0-bookworm-slim\nARG TC=build-essential\nRUN apt-get install -y --no-install-recommends bash coreutils git curl python3 ${TC} && rm -rf /var/lib/apt/lists/*\nRUN find / -xdev -perm /6000 -type f -exec chmod a-s {} +\nUSER 1000\nENTRYPOINT [\"/usr/local/bin/executor\"]\n", uid: "1000", sandbox: true},
		{name: "sandbox without node", src: "FROM debian:12.8\nRUN apt-get install -y --no-install-recommends bash coreutils git curl python3 build-essential && rm -rf /var/lib/apt/lists/*\nRUN find / -xdev -perm /6000 -type f -exec chmod a-s {} +\nUSER 1000\nENTRYPOINT [\"/usr/local/bin/executor\"]\n", uid: "1000", sandbox: true, want: "does not provide Node.js"},
		{name: "sandbox behind an init", src: "FROM node:22.23.0-bookworm-slim\nRUN apt-get install -y --no-install-recommends bash coreutils git curl python3 build-essential && rm -rf /var/lib/apt/lists/*\nRUN find / -xdev -perm /6000 -type f -exec chmod a-s {} +\nUSER 1000\nENTRYPOINT [\"/usr/bin/tini\", \"--\", \"/usr/local/bin/executor\"]\n", uid: "1000", sandbox: true, want: "the executor must be the entrypoint"},
		{name: "sandbox with setuid programs", src: "FROM node:22.23.0-bookworm-slim\nRUN apt-get install -y --no-install-recommends bash coreutils git curl python3 build-essential && rm -rf /var/lib/apt/lists/*\nUSER 1000\nENTRYPOINT [\"/usr/local/bin/executor\"]\n", uid: "1000", sandbox: true, want: "keeps its setuid and setgid programs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problems, err := check(tt.src, tt.uid, tt.static, tt.sandbox)
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == "" {
				for _, p := range problems {
					t.Errorf("valid Dockerfile: %s", p)
				}
				return
			}
			for _, p := range problems {
				if strings.Contains(p, tt.want) {
					return
				}
			}
			t.Errorf("no problem contains %q; got %q", tt.want, problems)
		})
	}
}

func TestParseDockerfile(t *testing.T) {
	src := "# comment\nARG X=1\nFROM a:1.2.3 AS one\nRUN echo a \\\n    # inside\n    && echo b\nFROM --platform=linux/amd64 b:1.2.3\nUSER 1\n"
	pre, stages, err := parseDockerfile(src)
	if err != nil {
		t.Fatal(err)
	}
	if len(pre) != 1 || pre[0].cmd != "ARG" {
		t.Errorf("pre = %+v", pre)
	}
	if len(stages) != 2 || stages[0].name != "one" || stages[1].image != "b:1.2.3" {
		t.Fatalf("stages = %+v", stages)
	}
	if got := stages[0].body[0].args; got != "echo a && echo b" {
		t.Errorf("continued RUN = %q", got)
	}
	for _, bad := range []string{"RUN x\n", "FROM\n", "FROM a:1.2.3\nRUN x \\"} {
		if _, _, err := parseDockerfile(bad); err == nil {
			t.Errorf("parseDockerfile(%q) succeeded", bad)
		}
	}
}

// cloudBuild is the part of a Cloud Build configuration the test reads.
type cloudBuild struct {
	Substitutions map[string]string `yaml:"substitutions"`
	Options       struct {
		Logging     string   `yaml:"logging"`
		MachineType string   `yaml:"machineType"`
		Env         []string `yaml:"env"`
	} `yaml:"options"`
	Steps []struct {
		ID         string   `yaml:"id"`
		Name       string   `yaml:"name"`
		Entrypoint string   `yaml:"entrypoint"`
		Args       []string `yaml:"args"`
		WaitFor    []string `yaml:"waitFor"`
	} `yaml:"steps"`
	Images  []string `yaml:"images"`
	Timeout string   `yaml:"timeout"`
}

// TestCloudBuild checks that cloudbuild.yaml builds every Dockerfile into
// the image terraform/ deploys, tagged with _TAG, and pushes it.
func TestCloudBuild(t *testing.T) {
	src, err := os.ReadFile("cloudbuild.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cb cloudBuild
	dec := yaml.NewDecoder(strings.NewReader(string(src)))
	dec.KnownFields(true)
	if err := dec.Decode(&cb); err != nil {
		t.Fatalf("cloudbuild.yaml: %v", err)
	}
	if cb.Options.Logging != "CLOUD_LOGGING_ONLY" {
		t.Errorf("options.logging = %q: a build with its own service account needs CLOUD_LOGGING_ONLY (or a logs bucket)", cb.Options.Logging)
	}
	if !slices.Contains(cb.Options.Env, "DOCKER_BUILDKIT=1") {
		t.Error("BuildKit is off: the per-Dockerfile .dockerignore files would be ignored")
	}
	if tag := cb.Substitutions["_TAG"]; tag != "" {
		t.Errorf("_TAG defaults to %q: a release must choose its own tag", tag)
	}
	for _, sub := range []string{"_REGION", "_REPOSITORY"} {
		if cb.Substitutions[sub] == "" {
			t.Errorf("substitution %s has no default", sub)
		}
	}
	for _, df := range dockerfiles {
		image := "${_REGION}-docker.pkg.dev/$PROJECT_ID/${_REPOSITORY}/" + df.program + ":${_TAG}"
		built := false
		for _, st := range cb.Steps {
			if slices.Contains(st.Args, "--file=deploy/"+df.file) {
				built = true
				if !slices.Contains(st.Args, "--tag="+image) {
					t.Errorf("step %s does not tag %s", st.ID, image)
				}
				if st.Args[len(st.Args)-1] != "." {
					t.Errorf("step %s: the build context is not the repository root", st.ID)
				}
			}
		}
		if !built {
			t.Errorf("no step builds deploy/%s", df.file)
		}
		if !slices.Contains(cb.Images, image) {
			t.Errorf("images does not push %s", image)
		}
	}
	if len(cb.Images) != len(dockerfiles) {
		t.Errorf("images lists %d images, want %d", len(cb.Images), len(dockerfiles))
	}
}
