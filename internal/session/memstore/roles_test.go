package memstore_test

import (
	"github.com/sandrun/sandrun/internal/dispatcher"
	"github.com/sandrun/sandrun/internal/host"
	"github.com/sandrun/sandrun/internal/launch"
	"github.com/sandrun/sandrun/internal/pool"
	"github.com/sandrun/sandrun/internal/reaper"
	"github.com/sandrun/sandrun/internal/session"
	"github.com/sandrun/sandrun/internal/session/memstore"
)

// Both stores serve every role.
var (
	_ pool.Store       = (*memstore.Store)(nil)
	_ pool.MemberStore = (*memstore.Store)(nil)
	_ pool.Store       = (*session.Store)(nil)
	_ pool.MemberStore = (*session.Store)(nil)
	_ dispatcher.Store = (*memstore.Store)(nil)
	_ host.Store       = (*memstore.Store)(nil)
	_ reaper.Store     = (*memstore.Store)(nil)
	_ launch.Store     = (*memstore.Store)(nil)

	_ dispatcher.Store = (*session.Store)(nil)
	_ host.Store       = (*session.Store)(nil)
	_ reaper.Store     = (*session.Store)(nil)
	_ launch.Store     = (*session.Store)(nil)
)
