import { describe, expect, it } from "vitest";
import { MissingSecretError, expandSecrets } from "./secrets.js";

describe("expandSecrets", () => {
  it("fills ${NAME} in header values from the environment, leaving everything else as written", () => {
    const headers = { authorization: "Bearer ${API_TOKEN}", "x-team": "core", "x-both": "${A}-${B}", "x-dollar": "$5 {x}" };
    expect(expandSecrets(headers, { API_TOKEN: "s3cret", A: "1", B: "2" })).toEqual({
      authorization: "Bearer s3cret",
      "x-team": "core",
      "x-both": "1-2",
      "x-dollar": "$5 {x}",
    });
  });

  it("names the header and the variable when the variable is not set", () => {
    expect(() => expandSecrets({ authorization: "Bearer ${API_TOKEN}" }, {})).toThrow(MissingSecretError);
    expect(() => expandSecrets({ authorization: "Bearer ${API_TOKEN}" }, {})).toThrow('header "authorization" refers to ${API_TOKEN}, which is not set');
  });
});
