// Zoho's official Node SDK for CRM v8, unchanged, against a prepaid-sync Zoho sandbox.
// Usage: node zoho_sdk_flow.mjs <api_domain> <client_id> <client_secret> <refresh_token> <work_dir>
// Prints one JSON line with what each call returned; exits 1 on any SDK error.
import * as ZOHOCRMSDK from "@zohocrm/nodejs-sdk-8.0";
import path from "node:path";

const [apiDomain, clientId, clientSecret, refreshToken, workDir] = process.argv.slice(2);
const out = {};

function status(response) {
  return response == null ? null : response.getStatusCode();
}

async function main() {
  const environment = ZOHOCRMSDK.DataCenter.setEnvironment(apiDomain, apiDomain + "/oauth/v2/token", apiDomain);
  const token = new ZOHOCRMSDK.OAuthBuilder()
    .clientId(clientId).clientSecret(clientSecret).refreshToken(refreshToken).build();
  const logger = new ZOHOCRMSDK.LogBuilder().level(ZOHOCRMSDK.Levels.INFO)
    .filePath(path.join(workDir, "sdk.log")).build();
  const sdkConfig = new ZOHOCRMSDK.SDKConfigBuilder().pickListValidation(false).autoRefreshFields(false).build();
  await (await new ZOHOCRMSDK.InitializeBuilder())
    .environment(environment).token(token).store(new ZOHOCRMSDK.FileStore(path.join(workDir, "tokens.txt")))
    .SDKConfig(sdkConfig).resourcePath(workDir).logger(logger).initialize();

  // Fields metadata (the first call: it makes the SDK refresh its access token first).
  const fieldParams = new ZOHOCRMSDK.ParameterMap();
  await fieldParams.add(ZOHOCRMSDK.Fields.GetFieldsParam.MODULE, "Accounts");
  const fields = await new ZOHOCRMSDK.Fields.FieldsOperations().getFields(fieldParams);
  out.fields = { status: status(fields), count: fields.getObject().getFields().length };

  // List Accounts with fields, then follow the page token.
  const ops = new ZOHOCRMSDK.Record.RecordOperations("Accounts");
  const params = new ZOHOCRMSDK.ParameterMap();
  await params.add(ZOHOCRMSDK.Record.GetRecordsParam.FIELDS, "Account_Name,Ledger_Customer_ID");
  await params.add(ZOHOCRMSDK.Record.GetRecordsParam.PER_PAGE, 20);
  const first = await ops.getRecords(params, new ZOHOCRMSDK.HeaderMap());
  const firstWrapper = first.getObject();
  const info = firstWrapper.getInfo();
  const ids = firstWrapper.getData().map((r) => String(r.getId()));
  await params.add(ZOHOCRMSDK.Record.GetRecordsParam.PAGE_TOKEN, info.getNextPageToken());
  const second = await ops.getRecords(params, new ZOHOCRMSDK.HeaderMap());
  const secondIds = second.getObject().getData().map((r) => String(r.getId()));
  out.list = { status: status(first), count: ids.length, more: info.getMoreRecords(),
               next_status: status(second), next_count: secondIds.length,
               overlap: secondIds.filter((id) => ids.includes(id)).length };

  // Upsert one account (update by the unique ledger id) and insert one.
  const update = new ZOHOCRMSDK.Record.Record();
  update.addKeyValue("Account_Name", "Node SDK Update Co");
  update.addKeyValue("Ledger_Customer_ID", process.env.EXISTING_LEDGER_ID);
  const insert = new ZOHOCRMSDK.Record.Record();
  insert.addKeyValue("Account_Name", "Node SDK Insert Co");
  insert.addKeyValue("Ledger_Customer_ID", "C-NODE-1");
  const body = new ZOHOCRMSDK.Record.BodyWrapper();
  body.setData([update, insert]);
  body.setDuplicateCheckFields(["Ledger_Customer_ID"]);
  body.setTrigger([]);
  const upsert = await ops.upsertRecords(body, new ZOHOCRMSDK.HeaderMap());
  const results = upsert.getObject().getData();
  out.upsert = { status: status(upsert),
                 results: results.map((r) => [r.getStatus().getValue(), r.getMessage().getValue()]) };
}

main().then(() => {
  console.log(JSON.stringify(out));
}).catch((err) => {
  console.error(err && err.stack ? err.stack : JSON.stringify(err));
  console.log(JSON.stringify({ ...out, error: String(err && (err.message || err.code) || err) }));
  process.exit(1);
});
