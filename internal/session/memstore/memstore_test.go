package memstore_test

import (
	"testing"
	"time"

	"github.com/sandrun/sandrun/internal/session"
	"github.com/sandrun/sandrun/internal/session/memstore"
	"github.com/sandrun/sandrun/internal/session/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Stores {
		clock := memstore.NewClock(time.Now())
		return storetest.Stores{Clock: clock,
			Store: memstore.New(session.Config{Bucket: "mem", LaunchTimeout: storetest.LaunchTimeout, Now: clock.Now})}
	})
}
