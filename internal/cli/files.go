package cli

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/client"
	"github.com/sandrun/sandrun/internal/system"
)

// remotePath is a SESSION:PATH argument; SESSION may be empty (":PATH")
// for the session of --session.
type remotePath struct {
	session, path string
}

// parseRemote reads SESSION:PATH. A local path with a colon can be given as
// ./a:b.
func parseRemote(arg, defaultSession string) (remotePath, bool) {
	if strings.HasPrefix(arg, "./") || strings.HasPrefix(arg, "/") {
		return remotePath{}, false
	}
	s, p, ok := strings.Cut(arg, ":")
	if !ok {
		return remotePath{}, false
	}
	if s == "" {
		s = defaultSession
	}
	return remotePath{session: s, path: p}, true
}

// request sends one request and returns its completion, turning an error
// completion into an error.
func (cf *clientFlags) request(ctx context.Context, req *api.Request) (*api.Completion, error) {
	if req.RequestID == "" {
		req.RequestID = uuid.NewString()
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	done, err := do(ctx, cf, req, launchAllowance)
	if err != nil {
		return nil, err
	}
	if done.Status == api.StatusError {
		return done, fmt.Errorf("%s: %s", done.Error.Code, done.Error.Message)
	}
	return done, nil
}

func runCp(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "cp", `cp [flags] SRC DST

Copies a file between this machine and a session: one of SRC and DST is
SESSION:PATH (or :PATH for --session's session). Small files travel in the
request, with their permission bits; larger ones through Cloud Storage,
streamed both ways (a new file gets mode 0644).`)
	var cf clientFlags
	cf.define(fs, system.Client)
	sessionID := fs.String("session", defaultSession, "session of a :PATH argument")
	fs.Env("session", "SANDRUN_SESSION")
	if err := cf.parse(fs, env, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fmt.Fprintln(env.Stderr, "sandrun cp: want SRC and DST, one of them SESSION:PATH")
		return errUsage
	}
	src, dst := fs.Arg(0), fs.Arg(1)
	rs, srcRemote := parseRemote(src, *sessionID)
	rd, dstRemote := parseRemote(dst, *sessionID)
	switch {
	case srcRemote == dstRemote:
		fmt.Fprintln(env.Stderr, "sandrun cp: exactly one of SRC and DST must be SESSION:PATH")
		return errUsage
	case dstRemote:
		return upload(ctx, &cf, src, rd)
	default:
		return download(ctx, &cf, rs, dst)
	}
}

func upload(ctx context.Context, cf *clientFlags, local string, to remotePath) error {
	f, err := os.Open(local)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if info.IsDir() {
		return fmt.Errorf("%s is a directory; sandrun cp copies files", local)
	}
	req := &api.Request{RequestID: uuid.NewString(), SessionID: to.session, Path: to.path}
	if info.Size() <= api.MaxInlineFileBytes {
		data, err := io.ReadAll(f)
		if err != nil {
			return err
		}
		req.Op, req.EncodedContent, req.Encoding = api.OpFileWrite, base64.StdEncoding.EncodeToString(data), api.EncodingBase64
		req.Mode = api.FormatMode(info.Mode().Perm())
		_, err = cf.request(ctx, req)
		return err
	}
	c, err := cf.connect(ctx, fmt.Sprintf("attributes.session_id = %q", to.session))
	if err != nil {
		return err
	}
	defer c.Close()
	object, err := c.Stage(ctx, to.session, req.RequestID, filepath.Base(local), f)
	if err != nil {
		return err
	}
	req.Op, req.Object = api.OpFileUpload, object
	_, err = cf.request(ctx, req)
	return err
}

func download(ctx context.Context, cf *clientFlags, from remotePath, local string) error {
	done, err := cf.request(ctx, &api.Request{SessionID: from.session, Op: api.OpFileDownload, Path: from.path})
	if err != nil {
		return err
	}
	r, err := client.ReadObject(ctx, done.Object)
	if err != nil {
		return err
	}
	defer r.Close()
	if st, err := os.Stat(local); err == nil && st.IsDir() {
		local = filepath.Join(local, filepath.Base(from.path))
	}
	tmp, err := os.CreateTemp(filepath.Dir(local), ".sandrun-cp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, r); err != nil {
		tmp.Close()
		return fmt.Errorf("download %s: %w", from.path, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), local)
}

func runLs(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "ls", "ls [flags] [PATH]\n\nLists a directory of a session (default: its working directory).")
	var cf clientFlags
	cf.define(fs, system.Client)
	sessionID := fs.String("session", defaultSession, "session to list")
	fs.Env("session", "SANDRUN_SESSION")
	recursive := fs.Bool("r", false, "descend into subdirectories")
	hidden := fs.Bool("a", false, "show entries whose name starts with '.'")
	if err := cf.parse(fs, env, args); err != nil {
		return err
	}
	done, err := cf.request(ctx, &api.Request{SessionID: *sessionID, Op: api.OpFileList, Path: fs.Arg(0), Recursive: *recursive, Hidden: *hidden})
	if err != nil {
		return err
	}
	for _, e := range done.Entries {
		name := e.Path
		if e.Type == api.FileTypeDir {
			name += "/"
		}
		if e.Target != "" {
			name += " -> " + e.Target
		}
		fmt.Fprintf(env.Stdout, "%s %4s %10d %s %s\n", e.Mode, e.Type, e.Size, e.ModifiedAt.Local().Format(time.DateTime), name)
	}
	if done.Truncated {
		fmt.Fprintln(env.Stderr, "sandrun ls: more entries than shown")
	}
	return nil
}

func runCat(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "cat", "cat [flags] PATH\n\nWrites a file of a session to standard output.")
	var cf clientFlags
	cf.define(fs, system.Client)
	sessionID := fs.String("session", defaultSession, "session to read from")
	fs.Env("session", "SANDRUN_SESSION")
	if err := cf.parse(fs, env, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(env.Stderr, "sandrun cat: want one PATH")
		return errUsage
	}
	for offset := int64(0); ; {
		done, err := cf.request(ctx, &api.Request{SessionID: *sessionID, Op: api.OpFileRead, Path: fs.Arg(0), Offset: offset, Encoding: api.EncodingBase64})
		if err != nil {
			return err
		}
		data, err := done.ContentData()
		if err != nil {
			return err
		}
		if _, err := env.Stdout.Write(data); err != nil {
			return err
		}
		offset += int64(len(data))
		if done.EOF || len(data) == 0 {
			return nil
		}
	}
}
