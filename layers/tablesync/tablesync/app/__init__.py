"""The serverless application's logic, one module per step of the app: `listing` (ListTables),
`checking` (ChecksumTable, RecheckTable), `repairing` (the repair Lambda), `serving` (the connector
and writer Lambdas) and `reporting` (Report), on what they share in `environment` (settings, AWS
clients, connector openers). The Lambda handlers in functions/ only parse their event into one of
the models in `events`, call one function of a step module, and return its model as JSON. The
engine and the connectors know nothing of AWS; this package puts them behind Step Functions,
DynamoDB checkpoints and connector Lambdas."""
