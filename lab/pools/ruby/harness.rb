# frozen_string_literal: true

# The pool matrix's harness for Rails' ActiveRecord (lab/pools/README.md, "The job"): builds
# ActiveRecord's real connection pool (PostgreSQL adapter, ruby-pg, libpq) from the job, warms
# it, lets it idle, queries it from threads, and prints one result object on stdout.
#
# A recipe runs as printed: `recipe_text` is database.yml lines, loaded as YAML as they stand and
# merged into the configuration (a line that does not parse, or a key neither ActiveRecord nor
# libpq takes, fails the job). Without `recipe_text`, `recipe`'s keys are merged the same way.
# Diagnostics go to stderr; the process exits at once when the result is printed (exit!), so a
# hung query cannot hold it.

require "json"
require "yaml"
require "active_record"
require "pg"

ERROR_CHARS = 200
# The pool's own keys (ActiveRecord 6.1 connection_pool.rb, hash_config.rb); every libpq key is
# passed on by the adapter (postgresql_adapter.rb: PG::Connection.conndefaults_hash).
POOL_KEYS = %w[pool idle_timeout reaping_frequency checkout_timeout].freeze

def version
  libpq = PG.library_version # 150018 for 15.18
  "ActiveRecord #{ActiveRecord::VERSION::STRING} (ruby-pg #{PG::VERSION}, libpq #{libpq / 10_000}.#{libpq % 10_000}, " \
    "ruby #{RUBY_VERSION})"
end

def finish(job, rounds, error)
  out = { "library" => job["library"], "version" => version, "rounds" => rounds }
  out["error"] = error if error
  $stdout.write("#{JSON.generate(out)}\n")
  $stdout.flush
  exit!(error ? 1 : 0)
end

def error_text(e)
  "#{e.class}: #{e.message}".gsub(/\s+/, " ")[0, ERROR_CHARS]
end

# The recipe as settings: the printed YAML, or the job's `recipe` object.
def recipe_settings(job)
  return {} if job["recipe"].nil?

  text = job["recipe_text"]
  settings = text ? YAML.safe_load(text) : job["recipe"]
  raise ArgumentError, "recipe_text is not a YAML mapping: #{text.inspect[0, 100]}" unless settings.is_a?(Hash)

  known = POOL_KEYS + PG::Connection.conndefaults_hash.keys.map(&:to_s)
  unknown = settings.keys.map(&:to_s) - known
  raise ArgumentError, "recipe keys neither ActiveRecord nor libpq takes: #{unknown.join(', ')}" unless unknown.empty?

  settings.transform_keys(&:to_s)
end

def config(job)
  d = job["dsn"]
  base = {
    "adapter" => "postgresql", "host" => d["host"], "port" => d["port"], "username" => d["user"],
    "password" => d["password"], "database" => d["dbname"], "application_name" => "pool-harness-rails"
  }
  base["pool"] = job["pool"]["max"] if job["pool"]
  base.merge(recipe_settings(job))
end

# Runs the block on a thread; raises if it has not finished within `seconds`.
def bounded(what, seconds)
  t = Thread.new { yield }
  t.report_on_exception = false
  raise "#{what}: no answer within #{seconds} s" unless t.join(seconds)

  t.value
end

# Holds `n` connections at once (so `n` distinct ones exist), runs SELECT 1 on each, returns them.
def warm(pool, n)
  held = Array.new(n) { pool.checkout }
  held.each { |c| c.select_value("SELECT 1") }
  held.each { |c| pool.checkin(c) }
  open = pool.connections.size
  raise "warm-up left #{open} connections, wanted #{n}" if open < n
end

def round(pool, r, hang)
  sleep r["idle_seconds"]
  started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  threads = Array.new(r["queries"]) do
    Thread.new do
      pool.with_connection { |c| c.select_value("SELECT 1") }
      [:ok, Process.clock_gettime(Process::CLOCK_MONOTONIC) - started]
    rescue StandardError => e
      [:failed, error_text(e)]
    end
  end
  res = { "idle_seconds" => r["idle_seconds"], "ok" => 0, "failed" => 0, "hung" => 0,
          "max_latency_seconds" => nil, "errors" => [] }
  threads.each do |t|
    left = started + hang - Process.clock_gettime(Process::CLOCK_MONOTONIC)
    unless t.join([left, 0].max)
      res["hung"] += 1 # left running: it keeps its connection, as a stuck request would
      next
    end
    kind, value = t.value
    if kind == :ok
      res["ok"] += 1
      res["max_latency_seconds"] = [res["max_latency_seconds"] || 0.0, value].max
    else
      res["failed"] += 1
      res["errors"] << value unless res["errors"].include?(value)
    end
  end
  res["max_latency_seconds"] = res["max_latency_seconds"]&.round(3)
  warn "harness.rb: rails: idle #{r['idle_seconds']}s: ok #{res['ok']} failed #{res['failed']} " \
       "hung #{res['hung']} max #{res['max_latency_seconds'].inspect}"
  res
end

def main
  job = JSON.parse(File.read(ARGV.fetch(0)))
rescue StandardError => e
  warn "harness.rb: cannot read the job: #{e.message}"
  exit!(2)
else
  begin
    hang = job["hang_seconds"].to_f
    ActiveRecord::Base.establish_connection(config(job))
    pool = ActiveRecord::Base.connection_pool
    warm_count = job["pool"] ? [job["pool"]["min"], 1].max : 1
    bounded("warm-up", hang) { warm(pool, warm_count) }
    warn "harness.rb: pool size #{pool.size}, idle_timeout #{pool.db_config.idle_timeout.inspect}, " \
         "reaping_frequency #{pool.db_config.reaping_frequency.inspect}"
  rescue StandardError => e
    finish(job, [], error_text(e))
  end
  finish(job, job["rounds"].map { |r| round(pool, r, hang) }, nil)
end

main
