-- carbon_magic ledger, schema version 1.
-- Times are UTC seconds since the epoch (REAL). Energy in joules (IT, before PUE) per
-- component; energy_kwh is the facility total (after PUE); emissions in grams CO2e.
-- JSON columns hold small objects (methods, devices, settings, hardware).

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS sessions (
    id              INTEGER PRIMARY KEY,
    session_uuid    TEXT NOT NULL UNIQUE,
    kernel_id       TEXT,            -- from the kernel's connection file, when there is one
    notebook_path   TEXT,            -- JPY_SESSION_NAME when Jupyter Server started the kernel
    host            TEXT NOT NULL,
    pid             INTEGER NOT NULL,
    started_at      REAL NOT NULL,
    ended_at        REAL,            -- set by a clean stop; NULL while running or after a crash
    tracker_state   TEXT NOT NULL,   -- running | stopped
    interval_s      REAL NOT NULL,
    mode            TEXT NOT NULL,   -- process | machine
    hardware_json   TEXT NOT NULL,   -- {"cpu_model":..., "n_cpus":..., "ram_gb":..., "gpus": [...]}
    methods_json    TEXT NOT NULL,   -- {"cpu": "modelled", "ram": "assumed", ...}
    settings_json   TEXT NOT NULL,   -- settings without secrets
    intensity_source TEXT NOT NULL,
    intensity_g_per_kwh REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_kernel ON sessions (kernel_id, started_at);

CREATE TABLE IF NOT EXISTS cells (
    id                  INTEGER PRIMARY KEY,
    session_id          INTEGER NOT NULL REFERENCES sessions (id),
    kernel_id           TEXT,
    cell_id             TEXT,
    execution_count     INTEGER,
    name                TEXT,            -- %%carbon --name, else NULL
    source              TEXT,            -- first source line
    via                 TEXT NOT NULL,   -- auto | magic | api
    status              TEXT NOT NULL,   -- ok | error | interrupted | stopped by budget
    started_at          REAL NOT NULL,
    ended_at            REAL NOT NULL,
    duration_s          REAL NOT NULL,
    cpu_j               REAL NOT NULL,
    gpu_j               REAL NOT NULL,
    ram_j               REAL NOT NULL,
    energy_kwh          REAL NOT NULL,
    energy_low_kwh      REAL NOT NULL,
    energy_high_kwh     REAL NOT NULL,
    emissions_g         REAL NOT NULL,
    emissions_low_g     REAL NOT NULL,
    emissions_high_g    REAL NOT NULL,
    embodied_g          REAL NOT NULL,
    intensity_g_per_kwh REAL NOT NULL,
    intensity_source    TEXT NOT NULL,
    pue                 REAL NOT NULL,
    mode                TEXT NOT NULL,
    methods_json        TEXT NOT NULL,
    devices_json        TEXT NOT NULL,
    budget              TEXT             -- e.g. "5g" or "0.2kWh", NULL when none
);
CREATE INDEX IF NOT EXISTS cells_kernel ON cells (kernel_id, started_at);
CREATE INDEX IF NOT EXISTS cells_session ON cells (session_id);
CREATE INDEX IF NOT EXISTS cells_started ON cells (started_at);

CREATE TABLE IF NOT EXISTS heartbeats (
    id                  INTEGER PRIMARY KEY,
    session_id          INTEGER NOT NULL REFERENCES sessions (id),
    kernel_id           TEXT,
    at                  REAL NOT NULL,
    cpu_w               REAL NOT NULL,
    gpu_w               REAL NOT NULL,
    ram_w               REAL NOT NULL,
    -- running totals of this session since the tracker started (attributed, facility):
    energy_kwh          REAL NOT NULL,
    emissions_g         REAL NOT NULL,
    emissions_low_g     REAL NOT NULL,
    emissions_high_g    REAL NOT NULL,
    embodied_g          REAL NOT NULL,
    intensity_g_per_kwh REAL NOT NULL,
    intensity_source    TEXT NOT NULL,
    tracker_state       TEXT NOT NULL,   -- running | stopped
    running_cell        TEXT,            -- first line of the cell running now, NULL when idle
    running_cell_started_at REAL
);
CREATE INDEX IF NOT EXISTS heartbeats_session ON heartbeats (session_id, at);
CREATE INDEX IF NOT EXISTS heartbeats_kernel ON heartbeats (kernel_id, at);
