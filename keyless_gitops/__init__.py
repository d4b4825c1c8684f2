"""keyless-gitops: provision, validate and tear down a keyless GitOps stack on Azure with Prefect."""
