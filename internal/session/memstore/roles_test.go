package memstore_test

import (
	"github.com/sandrun/sandrun/internal/dispatcher"
	"github.com/sandrun/sandrun/internal/host"
	"github.com/sandrun/sandrun/internal/launch"
	"github.com/sandrun/sandrun/internal/reaper"
	"github.com/sandrun/sandrun/internal/session"
	"github.com/sandrun/sandrun/internal/session/memstore"
)

// Both stores serve every role but the pool's (whose members live apart).
var (
	_ dispatcher.Store = (*memstore.Store)(nil)
	_ host.Store       = (*memstore.Store)(nil)
	_ reaper.Store     = (*memstore.Store)(nil)
	_ launch.Store     = (*memstore.Store)(nil)

	_ dispatcher.Store = (*session.Store)(nil)
	_ host.Store       = (*session.Store)(nil)
	_ reaper.Store     = (*session.Store)(nil)
	_ launch.Store     = (*session.Store)(nil)
)
