/**
 * Header values of http, callback and mcp tools may name environment variables as `${NAME}`: the value is read
 * from the environment of the process that sends the request, when it sends it. So a secret (an API token)
 * never enters the config, a run's events, `describe` or logs; only its name does.
 */
export function expandSecrets(headers: Record<string, string>, env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    out[name] = value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, variable: string) => {
      const found = env[variable];
      if (found === undefined) throw new MissingSecretError(`header "${name}" refers to \${${variable}}, which is not set in this process's environment`);
      return found;
    });
  }
  return out;
}

/** A `${NAME}` in a header whose variable is not set: setting it (and restarting) is the fix, retrying is not. */
export class MissingSecretError extends Error {
  override name = "MissingSecretError";
}
