// Package gcp connects sandrun's programs to the Google Cloud services they
// use. The official clients find the local cloud themselves through the
// *_EMULATOR_HOST variables; Cloud Run's client is configured by package
// jobrunner the same way. Nothing here differs between production and the
// local cloud but the endpoints.
package gcp

import (
	"context"
	"errors"
	"fmt"
	"os"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/storage"
	"golang.org/x/oauth2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// EmulatorOptions returns the options that reach a gRPC service of the
// local cloud, unauthenticated and in plain text, when the environment
// variable env names its host:port; nil (Google's endpoint) otherwise. It
// is for the services whose clients do not read an *_EMULATOR_HOST
// variable themselves: Cloud Run and IAM Credentials.
func EmulatorOptions(env string) []option.ClientOption {
	host := os.Getenv(env)
	if host == "" {
		return nil
	}
	return []option.ClientOption{
		option.WithEndpoint(host),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
}

// Clients are the connections a program holds.
type Clients struct {
	Project   string
	Firestore *firestore.Client
	Storage   *storage.Client
	PubSub    *pubsub.Client
}

// Connect opens clients for project. The Firestore database is the
// project's default one. The clients authenticate with ts when it is not
// nil (a session host's minted token), else with Application Default
// Credentials; a service of the local cloud takes no credentials, so its
// client gets none.
func Connect(ctx context.Context, project string, ts oauth2.TokenSource) (*Clients, error) {
	if project == "" {
		return nil, errors.New("connect to Google Cloud: no project given")
	}
	auth := func(emulatorEnv string) []option.ClientOption {
		if ts == nil || os.Getenv(emulatorEnv) != "" {
			return nil
		}
		return []option.ClientOption{option.WithTokenSource(ts)}
	}
	c := &Clients{Project: project}
	var err error
	if c.Firestore, err = firestore.NewClient(ctx, project, auth("FIRESTORE_EMULATOR_HOST")...); err != nil {
		return nil, fmt.Errorf("connect to Firestore: %w", err)
	}
	if c.Storage, err = storage.NewClient(ctx, auth("STORAGE_EMULATOR_HOST")...); err != nil {
		c.Close()
		return nil, fmt.Errorf("connect to Cloud Storage: %w", err)
	}
	if c.PubSub, err = pubsub.NewClient(ctx, project, auth("PUBSUB_EMULATOR_HOST")...); err != nil {
		c.Close()
		return nil, fmt.Errorf("connect to Pub/Sub: %w", err)
	}
	return c, nil
}

// Close closes every client that was opened.
func (c *Clients) Close() error {
	var errs []error
	if c.PubSub != nil {
		errs = append(errs, c.PubSub.Close())
	}
	if c.Storage != nil {
		errs = append(errs, c.Storage.Close())
	}
	if c.Firestore != nil {
		errs = append(errs, c.Firestore.Close())
	}
	return errors.Join(errs...)
}
