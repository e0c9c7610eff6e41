{
  // `{m1,m2}` from label matchers, dropping empty ones; '' when none is left, so a metric with
  // no matcher renders as its bare name.
  selector(matchers)::
    local kept = std.filter(function(m) m != '', matchers);
    if kept == [] then '' else '{' + std.join(',', kept) + '}',

  // YAML's `>-`: the lines of a ||| block joined by single spaces, no trailing newline.
  fold(text):: std.join(' ', std.split(std.rstripChars(text, '\n'), '\n')),
}
