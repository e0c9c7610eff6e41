// Pool-matrix harness for HikariCP 2.7.9 + pgJDBC (lab/pools/README.md has the job/result
// contract): builds a real HikariDataSource from the job's DSN, pool size and recipe, warms it,
// lets it idle for each round and counts how many concurrent `SELECT 1` succeed, fail or hang.

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.Statement;
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

public final class Harness {
    // HikariCP reads these two as JVM system properties (HikariPool's constructor), not as pool
    // properties: a recipe key with this prefix becomes System.setProperty before the pool starts.
    private static final String SYSTEM_PREFIX = "com.zaxxer.hikari.";

    private static String password = "";

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: run JOB_FILE");
            System.exit(2);
        }
        JsonObject job = new Gson().fromJson(Files.readString(Path.of(args[0])), JsonObject.class);
        JsonObject dsn = job.getAsJsonObject("dsn");
        password = dsn.get("password").getAsString();
        Map<String, Object> result = new java.util.LinkedHashMap<>();
        String library = job.get("library").getAsString();
        result.put("library", library);
        String version = System.getProperty("harness.version", "unknown");
        // Without a pool, only the driver's version is the library's.
        result.put("version", library.equals("pgjdbc") ? version.replaceFirst("^HikariCP [^,]*, ", "") : version);
        List<Object> rounds = new ArrayList<>();
        result.put("rounds", rounds);
        int code = 0;
        try {
            if (library.equals("pgjdbc")) {
                Plain.run(job, dsn, password, rounds);
            } else {
                run(job, dsn, rounds);
            }
        } catch (Exception e) {
            result.put("error", describe(e));
            code = 1;
        }
        System.out.println(new GsonBuilder().serializeNulls().create().toJson(result));
        System.out.flush();
        // Hung queries still hold their threads and connections: exit without closing the pool,
        // which would wait for them.
        Runtime.getRuntime().halt(code);
    }

    private static void run(JsonObject job, JsonObject dsn, List<Object> rounds) throws Exception {
        Properties props = new Properties();
        props.setProperty("jdbcUrl", String.format("jdbc:postgresql://%s:%d/%s",
                dsn.get("host").getAsString(), dsn.get("port").getAsInt(), dsn.get("dbname").getAsString()));
        props.setProperty("username", dsn.get("user").getAsString());
        props.setProperty("password", password);
        props.setProperty("poolName", "matrix");
        int warm = 1;
        JsonElement pool = job.get("pool");
        if (pool != null && !pool.isJsonNull()) {
            int min = pool.getAsJsonObject().get("min").getAsInt();
            props.setProperty("minimumIdle", Integer.toString(min));
            props.setProperty("maximumPoolSize", Integer.toString(pool.getAsJsonObject().get("max").getAsInt()));
            warm = Math.max(1, min);
        }
        // Recipe keys are HikariConfig property names (idleTimeout, maxLifetime, ...), pgJDBC
        // properties as dataSource.NAME (socketTimeout, ...), or HikariCP system properties.
        JsonElement recipe = job.get("recipe");
        JsonElement text = job.get("recipe_text");
        if (text != null && !text.isJsonNull()) {
            // The printed properties text, loaded as it stands.
            Properties printed = new Properties();
            printed.load(new java.io.StringReader(text.getAsString()));
            boolean spring = job.get("library").getAsString().equals("hikaricp_spring");
            for (String key : printed.stringPropertyNames()) {
                String name = spring ? Spring.hikariProperty(key) : key;
                System.err.printf("hikaricp: printed %s -> %s=%s%n", key, name, printed.getProperty(key));
                props.setProperty(name, printed.getProperty(key));
            }
        } else if (recipe != null && !recipe.isJsonNull()) {
            for (Map.Entry<String, JsonElement> e : recipe.getAsJsonObject().entrySet()) {
                String value = e.getValue().getAsString();
                if (e.getKey().startsWith(SYSTEM_PREFIX)) {
                    System.setProperty(e.getKey(), value);
                } else {
                    props.setProperty(e.getKey(), value);
                }
            }
        }
        HikariConfig config = new HikariConfig(props);
        HikariDataSource ds = new HikariDataSource(config);
        System.err.printf("hikaricp: minimumIdle=%d maximumPoolSize=%d idleTimeout=%d maxLifetime=%d validationTimeout=%d connectionTimeout=%d dataSource=%s%n",
                ds.getMinimumIdle(), ds.getMaximumPoolSize(), ds.getIdleTimeout(), ds.getMaxLifetime(),
                ds.getValidationTimeout(), ds.getConnectionTimeout(), ds.getDataSourceProperties().keySet());

        warmUp(ds, warm);
        // Threads are reused across rounds, as an application's worker threads are: HikariCP's
        // ConcurrentBag hands a thread the connections it used before first.
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
            rounds.add(round(ds, workers, idle, queries, hang));
            System.err.printf("hikaricp: after round idle=%.1fs total=%d idle=%d%n", idle,
                    ds.getHikariPoolMXBean().getTotalConnections(), ds.getHikariPoolMXBean().getIdleConnections());
        }
    }

    /** Holds n connections at once, so the pool really opened n, runs SELECT 1 on each, returns them. */
    private static void warmUp(HikariDataSource ds, int n) throws Exception {
        List<Connection> held = new ArrayList<>();
        try {
            for (int i = 0; i < n; i++) {
                Connection c = ds.getConnection();
                held.add(c);
                selectOne(c);
            }
            int total = ds.getHikariPoolMXBean().getTotalConnections();
            if (total < n) {
                throw new IllegalStateException("pool opened " + total + " connections, want " + n);
            }
        } finally {
            for (Connection c : held) {
                c.close();
            }
        }
    }

    static void selectOne(Connection c) throws Exception {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT 1")) {
            rs.next();
        }
    }

    /** One round: `queries` concurrent SELECT 1 through getConnection/execute/close. */
    private static Map<String, Object> round(HikariDataSource ds, ExecutorService workers, double idle,
                                             int queries, double hang) throws InterruptedException {
        long start = System.nanoTime();
        List<Future<Double>> running = new ArrayList<>();
        for (int i = 0; i < queries; i++) {
            running.add(workers.submit(() -> {
                long t = System.nanoTime();
                try (Connection c = ds.getConnection()) {
                    selectOne(c);
                }
                return (System.nanoTime() - t) / 1e9;
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
                hung++; // abandoned, never cancelled: the application would still be waiting
            } catch (ExecutionException e) {
                failed++;
                errors.add(describe(e.getCause()));
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

    /** Class and message (and the first cause's), password removed, cut to 200 characters. */
    static String describe(Throwable e) {
        String s = e.getClass().getSimpleName() + ": " + e.getMessage();
        if (e.getCause() != null && e.getCause() != e) {
            s += " (" + e.getCause().getClass().getSimpleName() + ": " + e.getCause().getMessage() + ")";
        }
        if (!password.isEmpty()) {
            s = s.replace(password, "***");
        }
        return s.length() > 200 ? s.substring(0, 200) : s;
    }
}
