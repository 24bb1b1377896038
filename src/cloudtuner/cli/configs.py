"""`cloudtuner configs ...`: saved SimpleTuner configs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cloudtuner.cli.common import ApiKeyOption, CommandError, JsonOption, UrlOption, ago, client, console, print_json
from cloudtuner.client.simpletuner_files import (
    find_config_folders,
    read_config_file,
    read_config_folder,
    read_dataloader_file,
)

app = typer.Typer(help="Saved SimpleTuner configs (config.json + multidatabackend.json).", no_args_is_help=True)


@app.command("list")
def list_configs(url: UrlOption = None, api_key: ApiKeyOption = None, as_json: JsonOption = False) -> None:
    """List saved configs."""
    with client(url, api_key) as api:
        reply = api.list_configs()
    if as_json:
        print_json(reply)
        return
    if not reply.configs:
        console.print("No saved configs. Add one with `cloudtuner configs put` or `cloudtuner configs import DIR`.")
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("NAME", "MODEL", "TYPE", "DATASETS", "VERSION", "UPDATED"):
        table.add_column(column)
    for config in reply.configs:
        table.add_row(
            config.name,
            config.model_family or "-",
            config.model_type or "-",
            str(config.datasets),
            (config.latest_commit or "-")[:12],
            ago(config.updated_at),
        )
    console.print(table)


@app.command()
def show(name: str, url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """Print a saved config as JSON (config and dataloader_config)."""
    with client(url, api_key) as api:
        print_json(api.get_config(name))


@app.command()
def put(
    name: str,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    config_file: Annotated[Path | None, typer.Option(help="The config.json (or config.toml).")] = None,
    dataloader_file: Annotated[Path | None, typer.Option(help="The multidatabackend.json.")] = None,
    config_dir: Annotated[
        Path | None, typer.Option(help="A SimpleTuner config folder instead of the two files.")
    ] = None,
    description: Annotated[str | None, typer.Option(help="A note shown in the list.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create or replace a saved config from files."""
    if config_dir is not None:
        local = read_config_folder(config_dir, name)
        config, dataloader = local.config, local.dataloader
    elif config_file is not None and dataloader_file is not None:
        config, dataloader = read_config_file(config_file), read_dataloader_file(dataloader_file)
    else:
        raise CommandError("Give --config-dir DIR, or both --config-file and --dataloader-file.")
    with client(url, api_key) as api:
        saved = api.put_config(name, config, dataloader, description)
    if as_json:
        print_json(saved)
    else:
        console.print(f"Saved config [bold]{name}[/] (version {(saved.latest_commit or '')[:12]}).")


@app.command("import")
def import_configs(
    folder: Path,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    name: Annotated[str | None, typer.Option(help="Name for a single config (default: its folder's name).")] = None,
) -> None:
    """Import a SimpleTuner config folder, or a folder of them (such as SimpleTuner's config/)."""
    folders = find_config_folders(folder)
    if name is not None and len(folders) > 1:
        raise CommandError(f"{folder} holds {len(folders)} configs; --name only works for one.")
    with client(url, api_key) as api:
        for config_folder in folders:
            local = read_config_folder(config_folder, name)
            saved = api.put_config(local.name, local.config, local.dataloader)
            console.print(
                f"Imported [bold]{local.name}[/] from {config_folder} "
                f"({len(local.dataloader)} dataset(s), version {(saved.latest_commit or '')[:12]})."
            )


@app.command()
def delete(name: str, url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """Delete a saved config (its history is kept)."""
    with client(url, api_key) as api:
        api.delete_config(name)
    console.print(f"Deleted config {name}.")


@app.command()
def history(name: str, url: UrlOption = None, api_key: ApiKeyOption = None, as_json: JsonOption = False) -> None:
    """List a config's saved versions."""
    with client(url, api_key) as api:
        reply = api.config_history(name)
    if as_json:
        print_json(reply)
        return
    for entry in reply.history:
        console.print(f"{entry.commit[:12]}  {entry.created_at:%Y-%m-%d %H:%M:%S}  {entry.message}")
