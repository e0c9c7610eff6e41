// Pool-matrix harness for Go's database/sql with lib/pq (lab/pools/README.md has the job/result
// contract): opens a real *sql.DB from the job's DSN, sizes it, applies the recipe, warms it,
// lets it idle for each round and counts how many concurrent `SELECT 1` succeed, fail or hang.
//
// The recipe is Go code (`db.SetConnMaxLifetime(6144 * time.Millisecond)`): Go cannot run a
// line it was not compiled with, so the harness parses the printed text strictly, one
// `db.SetX(...)` call a line, and refuses any line it does not recognise.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"
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
	code := 0
	if res.Error != "" {
		code = 1
	}
	// Hung queries still hold their goroutines and connections: exit without db.Close, which
	// would wait for them.
	os.Exit(code)
}

func fail(err error) {
	out, _ := json.Marshal(result{Library: "database_sql", Version: version, Error: scrub(err.Error())})
	fmt.Println(string(out))
	os.Exit(1)
}

// A line of the printed recipe: db.SetX(N * time.Unit) or db.SetX(N).
var call = regexp.MustCompile(`^db\.(Set[A-Za-z]+)\((\d+)(?: \* time\.(Millisecond|Second|Minute))?\)$`)

var units = map[string]time.Duration{"Millisecond": time.Millisecond, "Second": time.Second, "Minute": time.Minute}

// apply runs each line of the printed text on db, as the Go statements it spells.
func apply(db *sql.DB, text string) error {
	for i, line := range strings.Split(strings.TrimSpace(text), "\n") {
		m := call.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			return fmt.Errorf("recipe_text line %d: not a db.SetX(...) call this harness knows: %q", i+1, line)
		}
		n, _ := strconv.ParseInt(m[2], 10, 64)
		d := time.Duration(n) * units[m[3]]
		switch {
		case m[1] == "SetConnMaxLifetime" && m[3] != "":
			db.SetConnMaxLifetime(d)
		case m[1] == "SetConnMaxIdleTime" && m[3] != "":
			db.SetConnMaxIdleTime(d)
		case m[1] == "SetMaxIdleConns" && m[3] == "":
			db.SetMaxIdleConns(int(n))
		case m[1] == "SetMaxOpenConns" && m[3] == "":
			db.SetMaxOpenConns(int(n))
		default:
			return fmt.Errorf("recipe_text line %d: %s does not take %q", i+1, m[1], line)
		}
	}
	return nil
}

func run(j *job) result {
	res := result{Library: "database_sql", Version: version, Rounds: []roundResult{}}
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(j.DSN.User, j.DSN.Password),
		Host:     net.JoinHostPort(j.DSN.Host, strconv.Itoa(j.DSN.Port)),
		Path:     "/" + j.DSN.DBName,
		RawQuery: "sslmode=disable&connect_timeout=10",
	}
	connector, err := pq.NewConnector(u.String())
	if err != nil {
		res.Error = err.Error()
		return res
	}
	db := sql.OpenDB(connector)
	warm := 1
	if j.Pool != nil {
		// "Keeps 4 warm": 4 open and 4 kept idle (database/sql keeps only 2 idle by default).
		db.SetMaxOpenConns(j.Pool.Max)
		db.SetMaxIdleConns(j.Pool.Max)
		warm = j.Pool.Min
	}
	if j.RecipeText != "" {
		if err := apply(db, j.RecipeText); err != nil {
			res.Error = err.Error()
			return res
		}
	} else if len(j.Recipe) > 0 {
		res.Error = "a recipe without recipe_text: this harness runs only the printed text"
		return res
	}
	fmt.Fprintf(os.Stderr, "database_sql: pool %+v, recipe %q\n", j.Pool, j.RecipeText)
	ctx := context.Background()
	if err := warmUp(ctx, db, warm); err != nil {
		res.Error = "warm-up: " + err.Error()
		return res
	}
	hang := time.Duration(j.HangSeconds * float64(time.Second))
	for _, r := range j.Rounds {
		time.Sleep(time.Duration(r.IdleSeconds * float64(time.Second)))
		res.Rounds = append(res.Rounds, queryRound(db, r, hang))
		s := db.Stats()
		fmt.Fprintf(os.Stderr, "database_sql: round idle=%.1fs open=%d idle=%d lifetime_closed=%d idle_closed=%d\n",
			r.IdleSeconds, s.OpenConnections, s.Idle, s.MaxLifetimeClosed, s.MaxIdleTimeClosed)
	}
	return res
}

// warmUp holds n connections at once, so the pool really opened n of them, and gives them back.
func warmUp(ctx context.Context, db *sql.DB, n int) error {
	conns := make([]*sql.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	pids := map[int]bool{}
	for i := 0; i < n; i++ {
		c, err := db.Conn(ctx)
		if err != nil {
			return err
		}
		conns = append(conns, c)
		var pid int
		if err := c.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			return err
		}
		pids[pid] = true
	}
	if len(pids) < n {
		return fmt.Errorf("warm-up opened %d connections, want %d", len(pids), n)
	}
	return nil
}

type outcome struct {
	latency time.Duration
	err     error
}

// queryRound runs r.Queries concurrent SELECT 1 through the pool's normal path (QueryRow takes
// a connection, Scan gives it back). Queries still running `hang` after the round started are
// hung and abandoned.
func queryRound(db *sql.DB, r round, hang time.Duration) roundResult {
	out := roundResult{IdleSeconds: r.IdleSeconds, Errors: []string{}}
	done := make(chan outcome, r.Queries)
	for i := 0; i < r.Queries; i++ {
		go func() {
			t := time.Now()
			var one int
			err := db.QueryRowContext(context.Background(), "SELECT 1").Scan(&one)
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
