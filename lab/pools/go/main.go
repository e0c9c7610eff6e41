// Pool-matrix harness for pgx v4 pgxpool (lab/pools/README.md has the job/result contract):
// builds a real pgxpool from the job's DSN, pool size and recipe, warms it, lets it idle for
// each round and counts how many concurrent `SELECT 1` succeed, fail or hang.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v4/pgxpool"
)

// Set at build time (install.sh) from the Debian package versions.
var version = "unknown"

// The job's password, removed from every text we print.
var password string

type job struct {
	DSN struct {
		Host     string `json:"host"`
		Port     int    `json:"port"`
		User     string `json:"user"`
		Password string `json:"password"`
		DBName   string `json:"dbname"`
	} `json:"dsn"`
	Pool *struct {
		Min int `json:"min"`
		Max int `json:"max"`
	} `json:"pool"`
	Recipe      map[string]interface{} `json:"recipe"`
	RecipeText  string                 `json:"recipe_text"`
	Rounds      []round                `json:"rounds"`
	HangSeconds float64                `json:"hang_seconds"`
}

type round struct {
	IdleSeconds float64 `json:"idle_seconds"`
	Queries     int     `json:"queries"`
}

type roundResult struct {
	IdleSeconds float64  `json:"idle_seconds"`
	OK          int      `json:"ok"`
	Failed      int      `json:"failed"`
	Hung        int      `json:"hung"`
	MaxLatency  *float64 `json:"max_latency_seconds"`
	Errors      []string `json:"errors"`
}

type result struct {
	Library string        `json:"library"`
	Version string        `json:"version"`
	Rounds  []roundResult `json:"rounds"`
	Error   string        `json:"error,omitempty"`
}

// Recipe keys that are not connection-string parameters but application code around pgxpool:
// they have no DATABASE_URL form in pgx 4.15 (pgconn 1.11 parses no keepalive or read timeout).
const (
	// Each query runs under context.WithTimeout(ctx, query_timeout): the only bound pgx v4 has on
	// a query sent to a dead socket (pgconn sets a past deadline on the net.Conn when the
	// context ends, then closes the connection).
	keyQueryTimeout = "query_timeout"
	// Config.ConnConfig.DialFunc = (&net.Dialer{KeepAlive: d}).DialContext: Go sets
	// TCP_KEEPIDLE and TCP_KEEPINTVL both to d (pgconn's own dialer uses 5 min).
	keyDialKeepAlive = "dial_keepalive"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: harness JOB_FILE")
		os.Exit(2)
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail(err)
	}
	var j job
	if err := json.Unmarshal(raw, &j); err != nil {
		fail(err)
	}
	password = j.DSN.Password
	res := run(&j)
	res.Error = scrub(res.Error)
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	// Hung queries still hold their goroutines and connections: exit without pool.Close,
	// which would wait for them.
	os.Exit(0)
}

func fail(err error) {
	out, _ := json.Marshal(result{Library: "pgx", Version: version, Error: scrub(err.Error())})
	fmt.Println(string(out))
	os.Exit(1)
}

func duration(v interface{}) (time.Duration, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("expected a Go duration string like \"3100ms\", got %v", v)
	}
	return time.ParseDuration(s)
}

// connString builds the URL the application would put in DATABASE_URL: the pool size as
// pool_min_conns/pool_max_conns, then every recipe key except the code-level ones, verbatim.
func connString(j *job) (string, error) {
	u := url.URL{
		Scheme: "postgres",
		User:   url.UserPassword(j.DSN.User, j.DSN.Password),
		Host:   net.JoinHostPort(j.DSN.Host, strconv.Itoa(j.DSN.Port)),
		Path:   "/" + j.DSN.DBName,
	}
	q := url.Values{}
	q.Set("sslmode", "disable")
	if j.Pool != nil {
		q.Set("pool_min_conns", strconv.Itoa(j.Pool.Min))
		q.Set("pool_max_conns", strconv.Itoa(j.Pool.Max))
	}
	if j.RecipeText != "" {
		// The printed DATABASE_URL parameters, as they stand: the first line, "?k=v&k=v".
		line := strings.SplitN(j.RecipeText, "\n", 2)[0]
		if !strings.HasPrefix(line, "?") {
			return "", fmt.Errorf("recipe_text does not start with URL parameters: %q", line)
		}
		printed, err := url.ParseQuery(line[1:])
		if err != nil {
			return "", fmt.Errorf("recipe_text: %v", err)
		}
		for k, v := range printed {
			q.Set(k, v[0])
		}
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	for k, v := range j.Recipe {
		if k == keyQueryTimeout || k == keyDialKeepAlive {
			continue
		}
		switch v := v.(type) {
		case string:
			q.Set(k, v)
		case float64:
			q.Set(k, strconv.FormatFloat(v, 'f', -1, 64))
		default:
			return "", fmt.Errorf("recipe %s: unsupported value %v", k, v)
		}
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func run(j *job) result {
	res := result{Library: "pgx", Version: version, Rounds: []roundResult{}}
	cs, err := connString(j)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	cfg, err := pgxpool.ParseConfig(cs)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	var queryTimeout time.Duration
	if v, ok := j.Recipe[keyQueryTimeout]; ok {
		if queryTimeout, err = duration(v); err != nil {
			res.Error = keyQueryTimeout + ": " + err.Error()
			return res
		}
	}
	if v, ok := j.Recipe[keyDialKeepAlive]; ok {
		d, err := duration(v)
		if err != nil {
			res.Error = keyDialKeepAlive + ": " + err.Error()
			return res
		}
		cfg.ConnConfig.DialFunc = (&net.Dialer{KeepAlive: d}).DialContext
	}
	fmt.Fprintf(os.Stderr, "pgx: MinConns=%d MaxConns=%d MaxConnIdleTime=%s MaxConnLifetime=%s HealthCheckPeriod=%s ConnectTimeout=%s query_timeout=%s\n",
		cfg.MinConns, cfg.MaxConns, cfg.MaxConnIdleTime, cfg.MaxConnLifetime, cfg.HealthCheckPeriod, cfg.ConnConfig.ConnectTimeout, queryTimeout)

	ctx := context.Background()
	pool, err := pgxpool.ConnectConfig(ctx, cfg)
	if err != nil {
		res.Error = "connect: " + err.Error()
		return res
	}
	warm := 1
	if j.Pool != nil && j.Pool.Min > 0 {
		warm = j.Pool.Min
	}
	if err := warmUp(ctx, pool, warm); err != nil {
		res.Error = "warm-up: " + err.Error()
		return res
	}
	hang := time.Duration(j.HangSeconds * float64(time.Second))
	for _, r := range j.Rounds {
		time.Sleep(time.Duration(r.IdleSeconds * float64(time.Second)))
		res.Rounds = append(res.Rounds, queryRound(pool, r, hang, queryTimeout))
		fmt.Fprintf(os.Stderr, "pgx: round idle=%.1fs total_conns=%d idle_conns=%d\n",
			r.IdleSeconds, pool.Stat().TotalConns(), pool.Stat().IdleConns())
	}
	return res
}

// warmUp holds n connections at once, so the pool really opened n of them, runs SELECT 1 on
// each, and gives them back.
func warmUp(ctx context.Context, pool *pgxpool.Pool, n int) error {
	conns := make([]*pgxpool.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	for i := 0; i < n; i++ {
		c, err := pool.Acquire(ctx)
		if err != nil {
			return err
		}
		conns = append(conns, c)
		var one int
		if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			return err
		}
	}
	if got := pool.Stat().TotalConns(); int(got) < n {
		return fmt.Errorf("pool opened %d connections, want %d", got, n)
	}
	return nil
}

type outcome struct {
	latency time.Duration
	err     error
}

// queryRound runs r.Queries concurrent SELECT 1 through the pool's normal path (QueryRow
// acquires, Scan releases). Queries still running `hang` after the round started are hung and
// abandoned.
func queryRound(pool *pgxpool.Pool, r round, hang, queryTimeout time.Duration) roundResult {
	out := roundResult{IdleSeconds: r.IdleSeconds, Errors: []string{}}
	done := make(chan outcome, r.Queries)
	for i := 0; i < r.Queries; i++ {
		go func() {
			ctx := context.Background()
			if queryTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, queryTimeout)
				defer cancel()
			}
			t := time.Now()
			var one int
			err := pool.QueryRow(ctx, "SELECT 1").Scan(&one)
			done <- outcome{time.Since(t), err}
		}()
	}
	deadline := time.NewTimer(hang)
	defer deadline.Stop()
	errs := map[string]bool{}
	var max time.Duration
	for n := 0; n < r.Queries; n++ {
		select {
		case o := <-done:
			if o.err != nil {
				out.Failed++
				errs[cut(scrub(fmt.Sprintf("%T: %v", o.err, o.err)))] = true
			} else {
				out.OK++
				if o.latency > max {
					max = o.latency
				}
			}
		case <-deadline.C:
			out.Hung = r.Queries - n
			n = r.Queries
		}
	}
	if out.OK > 0 {
		s := max.Seconds()
		out.MaxLatency = &s
	}
	for e := range errs {
		out.Errors = append(out.Errors, e)
	}
	sort.Strings(out.Errors)
	return out
}

func cut(s string) string {
	if len(s) > 200 {
		return s[:200]
	}
	return s
}

// scrub removes the password from anything printed, in case an error message quotes the DSN.
func scrub(s string) string {
	if password == "" {
		return s
	}
	s = strings.ReplaceAll(s, password, "***")
	return strings.ReplaceAll(s, url.QueryEscape(password), "***")
}
