"""The serverless application's logic, one module per step of the app: `listing` (ListTables),
`checking` (ChecksumTable, RecheckTable), `repairing` (the repair Lambda), `serving` (the connector
and writer Lambdas) and `reporting` (Report). Around them, in layers: the Lambda handlers in
functions/ only validate their function's settings (a model of `settings`, from its environment),
parse their event into one of the models in `events`, call one function of a step module, and
return its model as JSON; the step modules reach AWS only through the Protocols of `stores` (and
the checkpoint store of `checkpoints`), whose boto3 implementations are made there from the
settings; `runtime` keeps each container's singletons. The engine and the connectors know nothing
of AWS; this package puts them behind Step Functions, DynamoDB checkpoints and connector Lambdas."""
