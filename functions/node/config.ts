/**
 * The Node server's configuration: the Node settings of the one reader (functions/shared/config.ts)
 * as commander options (flag, then environment variable, then default; help generated from the same
 * table), plus what only Node can do: read the cluster key file and check that credential files exist.
 */
import { existsSync, readFileSync } from 'node:fs';
import { type Command, Option } from 'commander';
import {
  ConfigError,
  clusterKeysOf,
  defaultOf,
  type NodeEnvConfig,
  parseConfig,
  SETTINGS,
  type SettingName,
  settingsOf,
} from '../shared/config.ts';

/** Node settings whose values are file paths or NATS credentials: `serve` folds them into `clusterKeys` and `natsAuth`. */
type FileAndAuthSettings =
  | 'clusterKeyFile'
  | 'natsUser'
  | 'natsPassword'
  | 'natsToken'
  | 'natsNkeySeedFile'
  | 'natsCreds'
  | 'natsTlsCa'
  | 'natsTlsCert'
  | 'natsTlsKey';

/** Settings of `session-replication serve`: the Node settings, with the key file read and the NATS credentials gathered. */
export interface ServeConfig extends Omit<NodeEnvConfig, FileAndAuthSettings> {
  /** How the node authenticates to NATS and verifies it. */
  natsAuth: NatsAuthConfig;
}

/** NATS credentials and TLS files (all optional; combine as the server requires). */
export interface NatsAuthConfig {
  user?: string;
  password?: string;
  token?: string;
  /** File holding an NKey seed (`SU...`). */
  nkeySeedFile?: string;
  /** A `.creds` file (JWT plus NKey seed) from `nsc`. */
  credsFile?: string;
  tlsCaFile?: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
}

/** The settings `serve` reads, in `--help` order. */
export const SERVE_SETTINGS: readonly SettingName[] = settingsOf('node');

/** A commander option for a setting: `--flag <value>`, its environment variable, its Node default and its help. */
export function settingOption(name: SettingName): Option {
  const spec = SETTINGS[name];
  const option = new Option(`--${spec.flag} <value>`, spec.help).env(spec.env);
  const fallback = defaultOf('node', name);
  return fallback === undefined ? option : option.default(fallback);
}

/** Adds every `serve` setting to `command` as an option. */
export function addServeOptions(command: Command): Command {
  for (const name of SERVE_SETTINGS) command.addOption(settingOption(name));
  return command;
}

/** The raw text of each setting `command` parsed (a blank environment variable counts as unset). */
export function rawSettings(command: Command): Partial<Record<SettingName, string>> {
  const values = command.opts<Record<string, unknown>>();
  const raw: Partial<Record<SettingName, string>> = {};
  for (const name of SERVE_SETTINGS) {
    const value = values[name];
    if (typeof value === 'string' && value.trim() !== '') raw[name] = value.trim();
  }
  return raw;
}

/** How an error names a setting: its flag when given on the command line (or defaulted), else its variable. */
export function nameIn(command: Command): (name: SettingName) => string {
  return (name) => (command.getOptionValueSource(name) === 'env' ? SETTINGS[name].env : `--${SETTINGS[name].flag}`);
}

/**
 * Validates `serve` settings (`raw`, as collected from flags and environment) into a `ServeConfig`:
 * reads the cluster key file and checks that credential files exist. Throws `ConfigError`.
 */
export function readServeConfig(
  raw: Partial<Record<SettingName, string>>,
  nameOf: (name: SettingName) => string = (name) => `--${SETTINGS[name].flag}`,
): ServeConfig {
  const config = parseConfig('node', raw, nameOf);
  const fileSettings = [
    'clusterKeyFile',
    'natsNkeySeedFile',
    'natsCreds',
    'natsTlsCa',
    'natsTlsCert',
    'natsTlsKey',
  ] as const;
  for (const name of fileSettings) {
    const file = config[name];
    if (file !== undefined && !existsSync(file)) throw new ConfigError(`${nameOf(name)}: no such file ${file}`);
  }
  const {
    clusterKeyFile,
    natsUser,
    natsPassword,
    natsToken,
    natsNkeySeedFile,
    natsCreds,
    natsTlsCa,
    natsTlsCert,
    natsTlsKey,
    clusterKeys,
    ...rest
  } = config;
  const natsAuth: NatsAuthConfig = {
    ...(natsUser !== undefined ? { user: natsUser, password: natsPassword } : {}),
    ...(natsToken !== undefined ? { token: natsToken } : {}),
    ...(natsNkeySeedFile !== undefined ? { nkeySeedFile: natsNkeySeedFile } : {}),
    ...(natsCreds !== undefined ? { credsFile: natsCreds } : {}),
    ...(natsTlsCa !== undefined ? { tlsCaFile: natsTlsCa } : {}),
    ...(natsTlsCert !== undefined ? { tlsCertFile: natsTlsCert, tlsKeyFile: natsTlsKey } : {}),
  };
  // The key file's keys follow the inline ones; both are checked together (no id twice).
  const keys =
    clusterKeyFile === undefined
      ? clusterKeys
      : clusterKeysOf(
          `${raw.clusterKey ?? ''}\n${readKeyFile(clusterKeyFile, nameOf('clusterKeyFile'))}`,
          nameOf('clusterKey'),
        );
  return { ...rest, clusterKeys: keys, natsAuth };
}

/** The text of a key file (one `id:base64` per line, `#` comments). */
function readKeyFile(file: string, source: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(
      `${source}: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
}
