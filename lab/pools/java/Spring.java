// Spring Boot's spelling of HikariCP settings (application.properties), mapped to the names
// HikariConfig(Properties) takes, as Spring Boot's relaxed binding does it:
//   spring.datasource.hikari.max-lifetime=...          -> maxLifetime (the setter setMaxLifetime)
//   spring.datasource.hikari.data-source-properties.X  -> dataSource.X (X passed to the driver as written)
// Spring Boot itself is not run here (no registry we use serves it as a Debian package); this is
// the binding its documentation describes: kebab-case names of the bean's setters, and a Map
// property whose keys are taken as written.

final class Spring {
    static final String PREFIX = "spring.datasource.hikari.";
    static final String DRIVER = "data-source-properties.";

    private Spring() {}

    static String hikariProperty(String key) {
        if (!key.startsWith(PREFIX)) {
            throw new IllegalArgumentException("not a spring.datasource.hikari.* property: " + key);
        }
        String rest = key.substring(PREFIX.length());
        if (rest.startsWith(DRIVER)) {
            return "dataSource." + rest.substring(DRIVER.length());
        }
        StringBuilder camel = new StringBuilder();
        boolean upper = false;
        for (char c : rest.toCharArray()) {
            if (c == '-') {
                upper = true;
            } else if (!Character.isLetterOrDigit(c)) {
                throw new IllegalArgumentException("unexpected character in " + key);
            } else {
                camel.append(upper ? Character.toUpperCase(c) : c);
                upper = false;
            }
        }
        return camel.toString();
    }
}
