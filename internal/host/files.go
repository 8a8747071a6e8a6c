package host

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/files"
	"github.com/sandrun/sandrun/internal/session"
)

// fileOp runs a file.* request against the session's file system, relative
// paths resolving against the session's working directory.
func (h *Host) fileOp(ctx context.Context, req *api.Request, c *api.Completion) {
	ops := files.Ops{Cwd: h.cwd(), Home: h.home()}
	err := h.runFileOp(ctx, ops, req, c)
	if err != nil {
		c.Fail(fileErrorCode(err), err.Error())
		return
	}
	c.ExitCode = 0
}

func (h *Host) runFileOp(ctx context.Context, ops files.Ops, req *api.Request, c *api.Completion) error {
	switch req.Op {
	case api.OpFileRead:
		res, err := ops.Read(ctx, req.Path, files.ReadOptions{Offset: req.Offset, Length: req.ReadLength(), MaxInline: api.MaxInlineFileBytes})
		if err != nil {
			return err
		}
		c.Size, c.EOF = res.Size, res.EOF
		if req.Encoding == api.EncodingBase64 {
			c.Content, c.ContentEncoding = encodeBase64(res.Content), api.EncodingBase64
		} else {
			c.Content, c.ContentEncoding = api.InlineOutput(res.Content)
		}
		return nil
	case api.OpFileWrite:
		data, err := req.Content()
		if err != nil {
			return fmt.Errorf("%w: %v", files.ErrInvalid, err)
		}
		mode, err := requestMode(req)
		if err != nil {
			return err
		}
		info, err := ops.Write(ctx, req.Path, data, files.WriteOptions{Mode: mode, Append: req.Append})
		if err != nil {
			return err
		}
		c.File = fileInfo(info, req.Path)
		return nil
	case api.OpFileDelete:
		return ops.Delete(ctx, req.Path, req.Recursive)
	case api.OpFileExists:
		info, ok, err := ops.Exists(ctx, req.Path)
		if err != nil {
			return err
		}
		c.Exists = &ok
		if ok {
			c.File = fileInfo(info, req.Path)
		}
		return nil
	case api.OpFileList:
		res, err := ops.List(ctx, req.Path, files.ListOptions{Recursive: req.Recursive, MaxDepth: req.MaxDepth, Hidden: req.Hidden, MaxResults: req.ResultLimit()})
		if err != nil {
			return err
		}
		c.Entries, c.Truncated = fileInfos(res.Entries), res.Truncated
		return nil
	case api.OpFileFind:
		res, err := ops.Find(ctx, req.Path, files.FindOptions{Pattern: req.Pattern, MaxDepth: req.MaxDepth, Hidden: req.Hidden, MaxResults: req.ResultLimit()})
		if err != nil {
			return err
		}
		c.Entries, c.Truncated = fileInfos(res.Entries), res.Truncated
		return nil
	case api.OpFileSearch:
		res, err := ops.Search(ctx, req.Path, files.SearchOptions{Pattern: req.Pattern, Include: req.Include, MaxDepth: req.MaxDepth, Hidden: req.Hidden, MaxResults: req.ResultLimit()})
		if err != nil {
			return err
		}
		c.Matches, c.Truncated = make([]api.Match, 0, len(res.Matches)), res.Truncated
		for _, m := range res.Matches {
			c.Matches = append(c.Matches, api.Match{Path: m.Path, LineNumber: m.LineNumber, Line: m.Line})
		}
		return nil
	case api.OpFileReplace:
		n, err := ops.Replace(ctx, req.Path, files.ReplaceOptions{OldString: req.OldString, NewString: req.NewString, ExpectedCount: req.Occurrences(), ReplaceAll: req.ReplaceAll})
		if err != nil {
			return err
		}
		c.Replacements = n
		return nil
	case api.OpFileUpload:
		return h.uploadFile(ctx, ops, req, c)
	case api.OpFileDownload:
		return h.downloadFile(ctx, ops, req, c)
	}
	return fmt.Errorf("%w: op %s is not a file operation", files.ErrInvalid, req.Op)
}

// uploadFile streams a staged object into a file.
func (h *Host) uploadFile(ctx context.Context, ops files.Ops, req *api.Request, c *api.Completion) error {
	bucket, name, _ := strings.Cut(strings.TrimPrefix(req.Object, "gs://"), "/")
	if bucket != h.store.Bucket() {
		return fmt.Errorf("%w: object %s is not in this deployment's bucket %s", files.ErrInvalid, req.Object, h.store.Bucket())
	}
	r, err := h.store.OpenObject(ctx, name)
	if errors.Is(err, session.ErrNotFound) {
		return fmt.Errorf("%w: the staged object %s does not exist", files.ErrNotFound, req.Object)
	}
	if err != nil {
		return err
	}
	defer r.Close()
	mode, err := requestMode(req)
	if err != nil {
		return err
	}
	info, err := ops.WriteFrom(ctx, req.Path, r, mode)
	if err != nil {
		return err
	}
	c.File, c.Size = fileInfo(info, req.Path), info.Size
	return nil
}

// downloadFile streams a file into a new object that the completion names.
func (h *Host) downloadFile(ctx context.Context, ops files.Ops, req *api.Request, c *api.Completion) error {
	f, info, err := ops.OpenForRead(ctx, req.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	name := session.TransferObject(h.cfg.SessionID, req.RequestID, safeObjectName(path.Base(info.Path)))
	n, err := h.store.WriteNewObject(ctx, name, "application/octet-stream", f)
	if err != nil {
		return fmt.Errorf("download %s: %w", req.Path, err)
	}
	c.Object, c.Size = h.store.ObjectURI(name), n
	c.File = fileInfo(info, req.Path)
	return nil
}

// safeObjectName keeps a file name usable as the last segment of an object
// name.
func safeObjectName(name string) string {
	if name == "" || name == "." || name == ".." || name == "/" {
		return "file"
	}
	return strings.ToValidUTF8(name, "_")
}

func requestMode(req *api.Request) (*fs.FileMode, error) {
	if req.Mode == "" {
		return nil, nil
	}
	m, err := api.ParseMode(req.Mode)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", files.ErrInvalid, err)
	}
	return &m, nil
}

func fileInfo(fi files.FileInfo, asGiven string) *api.FileInfo {
	out := &api.FileInfo{Path: asGiven, Type: api.FileType(fi.Type), Size: fi.Size, Mode: api.FormatMode(fi.Mode), ModifiedAt: fi.ModifiedAt, Target: fi.Target}
	return out
}

func fileInfos(in []files.FileInfo) []api.FileInfo {
	out := make([]api.FileInfo, 0, len(in))
	for _, fi := range in {
		out = append(out, api.FileInfo{Path: fi.Path, Type: api.FileType(fi.Type), Size: fi.Size, Mode: api.FormatMode(fi.Mode), ModifiedAt: fi.ModifiedAt, Target: fi.Target})
	}
	return out
}

// fileErrorCode maps an error of package files to the completion's code.
func fileErrorCode(err error) api.ErrorCode {
	switch {
	case errors.Is(err, files.ErrInvalid):
		return api.CodeInvalidArgument
	case errors.Is(err, files.ErrNotFound):
		return api.CodeNotFound
	case errors.Is(err, files.ErrPrecondition):
		return api.CodeFailedPrecondition
	case errors.Is(err, files.ErrTooLarge):
		return api.CodeResourceExhausted
	case errors.Is(err, context.DeadlineExceeded):
		return api.CodeTimeout
	case errors.Is(err, context.Canceled):
		return api.CodeHostLost
	}
	return api.CodeInternal
}

// cwd is the session's working directory. Only the foreground lane calls
// it, so no command changes it meanwhile.
func (h *Host) cwd() string { return h.state.Cwd }

// home is where "~" leads in a file path: the session's HOME, as the shell
// expands it, or the workspace when HOME is not an absolute path.
func (h *Host) home() string {
	if home := h.state.Env["HOME"]; filepath.IsAbs(home) {
		return home
	}
	dir, _ := filepath.Abs(h.cfg.Workspace)
	return dir
}

func encodeBase64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
