package iam_test

import (
	"context"
	"testing"
	"time"

	credentials "cloud.google.com/go/iam/credentials/apiv1"
	"cloud.google.com/go/iam/credentials/apiv1/credentialspb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/emulator/emulatortest"
	"github.com/sandrun/sandrun/internal/gcp"
)

func TestGenerateAccessToken(t *testing.T) {
	s := emulatortest.Start(t, emulator.Config{})
	ctx := context.Background()
	client, err := credentials.NewIamCredentialsClient(ctx, gcp.EmulatorOptions(emulator.EnvIAMCredentials)...)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	const name = "projects/-/serviceAccounts/sandrun-executor@p.iam.gserviceaccount.com"
	scope := []string{"https://www.googleapis.com/auth/cloud-platform"}
	before := time.Now()
	resp, err := client.GenerateAccessToken(ctx, &credentialspb.GenerateAccessTokenRequest{Name: name, Scope: scope, Lifetime: durationpb.New(10 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	exp := resp.GetExpireTime().AsTime()
	if exp.Before(before.Add(10*time.Minute)) || exp.After(time.Now().Add(10*time.Minute)) {
		t.Fatalf("expires %s, want 10 minutes from now", exp)
	}
	if m, ok := s.IAM.Minted(resp.GetAccessToken()); !ok || m.Account != "sandrun-executor@p.iam.gserviceaccount.com" || !m.Expires.Equal(exp) {
		t.Fatalf("Minted = %+v, %v", m, ok)
	}
	if _, ok := s.IAM.Minted("ya29.something-else"); ok {
		t.Fatal("Minted accepts a token it never minted")
	}
	dflt, err := client.GenerateAccessToken(ctx, &credentialspb.GenerateAccessTokenRequest{Name: name, Scope: scope})
	if err != nil || time.Until(dflt.GetExpireTime().AsTime()) < 59*time.Minute {
		t.Fatalf("default lifetime: %v, %v", dflt.GetExpireTime().AsTime(), err)
	}
	for _, bad := range []*credentialspb.GenerateAccessTokenRequest{
		{Name: "sandrun-executor@p.iam.gserviceaccount.com", Scope: scope},
		{Name: "projects/-/serviceAccounts/not-an-email", Scope: scope},
		{Name: name},
		{Name: name, Scope: scope, Lifetime: durationpb.New(2 * time.Hour)},
		{Name: name, Scope: scope, Lifetime: durationpb.New(-time.Second)},
	} {
		if _, err := client.GenerateAccessToken(ctx, bad); status.Code(err) != codes.InvalidArgument {
			t.Errorf("GenerateAccessToken(%v) = %v, want InvalidArgument", bad, err)
		}
	}
}
