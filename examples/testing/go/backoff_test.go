// `go test` against `contactcard serve --ephemeral --seed examples/testing/seed.yaml`.
// Run `go get github.com/linq-team/linq-go@latest` first (it pins the SDK in go.mod).
package example

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"testing"

	"github.com/linq-team/linq-go"
	"github.com/linq-team/linq-go/option"
)

const (
	apiKey = "test-key-example-partner-0001" // from seed.yaml
	phone  = "+15557770001"
)

func env(name, fallback string) string {
	if value, ok := os.LookupEnv(name); ok {
		return value
	}
	return fallback
}

var server = env("CONTACTCARD_URL", "http://127.0.0.1:8000")

func admin(t *testing.T, method, path string, body any) {
	t.Helper()
	var payload bytes.Buffer
	if body != nil {
		if err := json.NewEncoder(&payload).Encode(body); err != nil {
			t.Fatal(err)
		}
	}
	request, err := http.NewRequest(method, server+"/admin/v1"+path, &payload)
	if err != nil {
		t.Fatal(err)
	}
	request.Header.Set("Authorization", "Bearer "+env("CONTACTCARD_ADMIN_TOKEN", "admin-token"))
	request.Header.Set("Content-Type", "application/json")
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		t.Fatal(err)
	}
	defer response.Body.Close()
	if response.StatusCode >= 400 {
		t.Fatalf("%s %s: %d", method, path, response.StatusCode)
	}
}

func clean(t *testing.T) *linqgo.Client {
	// Cards, budgets, device scripts and the journal forgotten; settings and clock back.
	admin(t, "POST", "/reset", nil)
	admin(t, "DELETE", "/settings", nil)
	admin(t, "DELETE", "/clock", nil)
	client := linqgo.NewClient(
		option.WithBaseURL(server+"/api/partner/"),
		option.WithAPIKey(apiKey),
		option.WithMaxRetries(0),
	)
	return &client
}

func TestA429ThenTheWindowPasses(t *testing.T) {
	client := clean(t)
	ctx := context.Background()
	admin(t, "PATCH", "/settings", map[string]any{"write_budget": 1})
	if _, err := client.ContactCard.New(ctx, linqgo.ContactCardNewParams{PhoneNumber: phone, FirstName: "Ada"}); err != nil {
		t.Fatal(err)
	}
	_, err := client.ContactCard.Update(ctx, linqgo.ContactCardUpdateParams{PhoneNumber: phone, FirstName: linqgo.String("Grace")})
	var apierr *linqgo.Error
	if !errors.As(err, &apierr) || apierr.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("want a 429, got %v", err)
	}
	admin(t, "POST", "/clock/advance", map[string]any{"seconds": 600})
	card, err := client.ContactCard.Update(ctx, linqgo.ContactCardUpdateParams{PhoneNumber: phone, FirstName: linqgo.String("Grace")})
	if err != nil || card.FirstName != "Grace" {
		t.Fatalf("after the window: %v %v", card, err)
	}
}

func TestAFailingDeviceLeavesTheCardInactive(t *testing.T) {
	client := clean(t)
	admin(t, "PUT", fmt.Sprintf("/devices/%s/script", url.PathEscape(phone)), map[string]any{"fail_next": 1})
	card, err := client.ContactCard.New(context.Background(), linqgo.ContactCardNewParams{PhoneNumber: phone, FirstName: "Ada"})
	if err != nil || card.IsActive {
		t.Fatalf("want an inactive card: %v %v", card, err)
	}
}
