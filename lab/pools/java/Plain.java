// Plain pgJDBC, no pool (library "pgjdbc"): the application holds `pool.min` (or 1) connections
// and sends query i to connection i mod n, one query at a time per connection. The recipe is a
// JDBC URL plus two lines of Java; Java cannot run a line it was not compiled with, so the
// printed text is parsed strictly (each line must be exactly what the exporter prints) and
// what it says is done: the URL's parameters go to the driver, and a connection idle longer
// than the stated window is checked with isValid(seconds) and replaced when that answers false.

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import java.sql.Connection;
import java.sql.DriverManager;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

final class Plain {
    private static final Pattern URL = Pattern.compile("^jdbc:postgresql://HOST/DB\\?([A-Za-z]+=[0-9A-Za-z]+(?:&[A-Za-z]+=[0-9A-Za-z]+)*)$");
    private static final Pattern WINDOW = Pattern.compile("^// and before using a connection idle over (\\d+) ms \\(isValid_after_idle_ms\\):$");
    private static final Pattern CHECK = Pattern.compile(
            "^if \\(!conn\\.isValid\\((\\d+)\\)\\) \\{ conn\\.close\\(\\); conn = DriverManager\\.getConnection\\(url, props\\); \\}$");

    private Plain() {}

    /** One held connection: used by one query at a time, checked after an idle when the recipe says so. */
    private static final class Held {
        Connection conn;
        long lastUsed = System.nanoTime();
    }

    static void run(JsonObject job, JsonObject dsn, String password, List<Object> rounds) throws Exception {
        String url = String.format("jdbc:postgresql://%s:%d/%s", dsn.get("host").getAsString(),
                dsn.get("port").getAsInt(), dsn.get("dbname").getAsString());
        Properties props = new Properties();
        props.setProperty("user", dsn.get("user").getAsString());
        props.setProperty("password", password);
        long windowMs = -1;
        int validSeconds = 0;
        JsonElement text = job.get("recipe_text");
        if (text != null && !text.isJsonNull()) {
            String[] lines = text.getAsString().split("\n");
            Matcher u = lines.length == 3 ? URL.matcher(lines[0]) : null;
            Matcher w = lines.length == 3 ? WINDOW.matcher(lines[1]) : null;
            Matcher c = lines.length == 3 ? CHECK.matcher(lines[2]) : null;
            if (u == null || !u.matches() || !w.matches() || !c.matches()) {
                throw new IllegalArgumentException("recipe_text is not the pgjdbc recipe this harness knows: " + text.getAsString());
            }
            for (String kv : u.group(1).split("&")) {
                String[] p = kv.split("=", 2);
                props.setProperty(p[0], p[1]);
            }
            windowMs = Long.parseLong(w.group(1));
            validSeconds = Integer.parseInt(c.group(1));
        }
        JsonElement pool = job.get("pool");
        int n = pool != null && !pool.isJsonNull() ? Math.max(1, pool.getAsJsonObject().get("min").getAsInt()) : 1;
        System.err.printf("pgjdbc: %d held connection(s), driver properties %s, isValid(%d) after %d ms idle%n",
                n, props.stringPropertyNames().stream().filter(k -> !k.equals("password")).map(k -> k + "=" + props.getProperty(k)).toList(),
                validSeconds, windowMs);
        List<Held> held = new ArrayList<>();
        TreeSet<Integer> pids = new TreeSet<>();
        for (int i = 0; i < n; i++) {
            Held h = new Held();
            h.conn = DriverManager.getConnection(url, props);
            try (var s = h.conn.createStatement(); var rs = s.executeQuery("SELECT pg_backend_pid()")) {
                rs.next();
                pids.add(rs.getInt(1));
            }
            held.add(h);
        }
        if (pids.size() < n) {
            throw new IllegalStateException("warm-up opened " + pids.size() + " connections, want " + n);
        }
        ExecutorService workers = Executors.newCachedThreadPool(r -> {
            Thread t = new Thread(r, "query");
            t.setDaemon(true);
            return t;
        });
        double hang = job.get("hang_seconds").getAsDouble();
        for (JsonElement r : job.getAsJsonArray("rounds")) {
            double idle = r.getAsJsonObject().get("idle_seconds").getAsDouble();
            int queries = r.getAsJsonObject().get("queries").getAsInt();
            Thread.sleep((long) (idle * 1000));
            rounds.add(round(held, workers, url, props, windowMs, validSeconds, idle, queries, hang));
        }
    }

    private static void use(Held h, String url, Properties props, long windowMs, int validSeconds) throws Exception {
        synchronized (h) {
            boolean idleLong = windowMs >= 0 && System.nanoTime() - h.lastUsed > windowMs * 1_000_000L;
            if (idleLong && !h.conn.isValid(validSeconds)) {
                h.conn.close();
                h.conn = DriverManager.getConnection(url, props);
            }
            Harness.selectOne(h.conn);
            h.lastUsed = System.nanoTime();
        }
    }

    private static Map<String, Object> round(List<Held> held, ExecutorService workers, String url, Properties props,
                                             long windowMs, int validSeconds, double idle, int queries, double hang)
            throws InterruptedException {
        long start = System.nanoTime();
        List<Future<Double>> running = new ArrayList<>();
        for (int i = 0; i < queries; i++) {
            Held h = held.get(i % held.size());
            running.add(workers.submit(() -> {
                use(h, url, props, windowMs, validSeconds);
                return (System.nanoTime() - start) / 1e9;
            }));
        }
        long deadline = start + (long) (hang * 1e9);
        int ok = 0, failed = 0, hung = 0;
        Double max = null;
        TreeSet<String> errors = new TreeSet<>();
        for (Future<Double> f : running) {
            try {
                double latency = f.get(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
                ok++;
                max = max == null ? latency : Math.max(max, latency);
            } catch (TimeoutException e) {
                hung++;
            } catch (ExecutionException e) {
                failed++;
                errors.add(Harness.describe(e.getCause()));
            }
        }
        Map<String, Object> out = new java.util.LinkedHashMap<>();
        out.put("idle_seconds", idle);
        out.put("ok", ok);
        out.put("failed", failed);
        out.put("hung", hung);
        out.put("max_latency_seconds", max);
        out.put("errors", new ArrayList<>(errors));
        return out;
    }
}
