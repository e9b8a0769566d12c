"""The serverless application's logic. The Lambda handlers in functions/ only parse their event into
one of the models in `events`, call one function of `service`, and return its model as JSON. The
engine and the connectors know nothing of AWS; this package puts them behind Step Functions,
DynamoDB checkpoints and connector Lambdas."""
