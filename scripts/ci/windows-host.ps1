<#
.SYNOPSIS
    The steps of .github/workflows/windows-host.yml: provider-fallback deployed to the GitHub
    Windows runner itself, over WinRM to localhost, then checked by tests/host/windows.

.DESCRIPTION
    Every command the workflow runs is here (the workflow only calls -Step), so the tests can
    parse it with tree-sitter-powershell. Run from the repository root, in order:

    winrm       an administrator account for the deploy (pfci, a random password) and
                WinRM over HTTPS with a self-signed certificate, by the documented script
                (scripts\windows\enable-winrm-https.ps1); the variables the inventory and the
                host suite read go to $env:GITHUB_ENV, the password masked
    controller  the controller venv (.venv) with this project, from the runner's Python
    stack       the stack to deploy: release hashes from the releases' sha256sums.txt, and
                windows.python = the runner's interpreter (scripts\ci\windows_ci_stack.py)
    deploy      pyinfra inventory\windows.py deploy.py (output in artifacts\deploy.log)
    test        the real-host suite, tests\host\windows (artifacts\host-tests.log)
    redeploy    the suite's second-deploy test: a second deploy changes nothing
                (artifacts\redeploy.log)
    artifacts   the host's event and proxy logs and `provider-fallback status --json`

.NOTES
    Exit codes: 0 done; otherwise the failing command's code, or 1.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [ValidateSet('winrm', 'controller', 'stack', 'deploy', 'test', 'redeploy', 'artifacts')]
    [string]$Step
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

# Release archives for Windows (docs/windows.md: "Before the first Windows deploy").
$PrometheusVersion = '3.5.0'
$AlertmanagerVersion = '0.28.1'
$Account = 'pfci'
$Venv = '.venv'
$Artifacts = 'artifacts'
$CiStack = 'build\ci-stack.yaml'

trap {
    $host.UI.WriteErrorLine(('windows-host {0}: {1}' -f $Step, $_.Exception.Message))
    exit 1
}

function Add-JobVariable {
    # For the later steps of the job (GITHUB_ENV); a secret is masked in the log first.
    param([string]$Name, [string]$Value, [switch]$Secret)
    if ($Secret) {
        Write-Output ('::add-mask::{0}' -f $Value)
    }
    Add-Content -LiteralPath $env:GITHUB_ENV -Value ('{0}={1}' -f $Name, $Value) -Encoding UTF8
    [System.Environment]::SetEnvironmentVariable($Name, $Value, 'Process')
}

function New-Secret {
    # 32 random bytes as base64, plus one character of each class Windows' policy asks for.
    [OutputType([string])]
    param()
    $bytes = New-Object byte[] 32
    [System.Security.Cryptography.RandomNumberGenerator]::Create().GetBytes($bytes)
    return ([System.Convert]::ToBase64String($bytes) + 'aA1!')
}

function Invoke-Native {
    # A native program; its output also to $LogFile when given; stops on a non-zero exit.
    param([string]$Program, [string[]]$Arguments, [string]$LogFile = '')
    if ($LogFile -ne '') {
        & $Program @Arguments 2>&1 | ForEach-Object { [string]$_ } | Tee-Object -FilePath $LogFile -Append
    } else {
        & $Program @Arguments
    }
    if ($LASTEXITCODE -ne 0) {
        exit $LASTEXITCODE
    }
}

function Get-StackPaths {
    $json = & (Join-Path $Venv 'Scripts\python.exe') 'scripts\ci\windows_ci_stack.py' 'paths' '--stack' $CiStack
    if ($LASTEXITCODE -ne 0) {
        exit $LASTEXITCODE
    }
    return ($json | ConvertFrom-Json)
}

[void][System.IO.Directory]::CreateDirectory($Artifacts)
$python = Join-Path $Venv 'Scripts\python.exe'

switch ($Step) {
    'winrm' {
        $password = New-Secret
        $secure = ConvertTo-SecureString -String $password -AsPlainText -Force
        New-LocalUser -Name $Account -Password $secure -PasswordNeverExpires | Out-Null
        Add-LocalGroupMember -SID 'S-1-5-32-544' -Member $Account
        # A local administrator other than the built-in one gets a filtered token over the
        # network unless this is 1 (docs/windows.md: "Enable WinRM over HTTPS").
        Set-ItemProperty -Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System' `
            -Name 'LocalAccountTokenFilterPolicy' -Value 1 -Type DWord
        $cer = Join-Path $env:RUNNER_TEMP 'winrm.cer'
        & '.\scripts\windows\enable-winrm-https.ps1' -DnsName @('localhost', $env:COMPUTERNAME) -CertificateFile $cer
        if ($LASTEXITCODE -ne 0) {
            exit $LASTEXITCODE
        }
        $der = [System.IO.File]::ReadAllBytes($cer)
        $pem = "-----BEGIN CERTIFICATE-----`n" +
            [System.Convert]::ToBase64String($der, 'InsertLineBreaks') + "`n-----END CERTIFICATE-----`n"
        # The connector trusts this file only; the host suite's testinfra reads
        # REQUESTS_CA_BUNDLE, which pip reads too: the public CAs stay in it.
        $bundle = Join-Path $env:RUNNER_TEMP 'ca-bundle.pem'
        $public = & python -c 'import certifi; print(certifi.where())'
        if ($LASTEXITCODE -ne 0) {
            & python -m pip install --quiet certifi
            $public = & python -c 'import certifi; print(certifi.where())'
        }
        [System.IO.File]::WriteAllText($bundle, [System.IO.File]::ReadAllText($public) + "`n" + $pem)
        $winrmPem = Join-Path $env:RUNNER_TEMP 'winrm.pem'
        [System.IO.File]::WriteAllText($winrmPem, $pem)
        Add-JobVariable -Name 'WINRM_PASSWORD' -Value $password -Secret
        Add-JobVariable -Name 'WINRM_HOST' -Value 'localhost'
        Add-JobVariable -Name 'WINRM_USER' -Value ('{0}\{1}' -f $env:COMPUTERNAME, $Account)
        Add-JobVariable -Name 'WINRM_CA_BUNDLE' -Value $winrmPem
        Add-JobVariable -Name 'REQUESTS_CA_BUNDLE' -Value $bundle
        Add-JobVariable -Name 'LITELLM_MASTER_KEY' -Value ('sk-' + (New-Secret)) -Secret
    }
    'controller' {
        Invoke-Native -Program 'python' -Arguments @('-m', 'venv', $Venv)
        Invoke-Native -Program $python -Arguments @('-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '-e', '.[dev]')
    }
    'stack' {
        $releases = @{}
        foreach ($name in @('prometheus', 'alertmanager')) {
            $version = $PrometheusVersion
            if ($name -eq 'alertmanager') {
                $version = $AlertmanagerVersion
            }
            $base = 'https://github.com/prometheus/{0}/releases/download/v{1}' -f $name, $version
            $sums = Join-Path $env:RUNNER_TEMP ('{0}-sha256sums.txt' -f $name)
            Invoke-WebRequest -UseBasicParsing -Uri ($base + '/sha256sums.txt') -OutFile $sums
            $releases[$name] = @(('{0}/{1}-{2}.windows-amd64.zip' -f $base, $name, $version), $sums)
        }
        $runnerPython = (Get-Command python).Source
        Invoke-Native -Program $python -Arguments @('scripts\ci\windows_ci_stack.py', 'write',
            '--out', $CiStack, '--python', $runnerPython,
            '--prometheus-url', $releases['prometheus'][0], '--prometheus-sums', $releases['prometheus'][1],
            '--alertmanager-url', $releases['alertmanager'][0], '--alertmanager-sums', $releases['alertmanager'][1])
        Add-JobVariable -Name 'PF_STACK_FILE' -Value $CiStack
    }
    'deploy' {
        Invoke-Native -Program (Join-Path $Venv 'Scripts\pyinfra.exe') -Arguments @('-y', 'inventory\windows.py', 'deploy.py') -LogFile (Join-Path $Artifacts 'deploy.log')
    }
    'test' {
        Invoke-Native -Program $python -Arguments @('-m', 'pytest', 'tests\host\windows', '-v', '-rs') -LogFile (Join-Path $Artifacts 'host-tests.log')
    }
    'redeploy' {
        $env:PF_WINDOWS_INVENTORY = 'inventory\windows.py'
        Invoke-Native -Program $python -Arguments @('-m', 'pytest', 'tests\host\windows', '-v', '-k', 'a_second_deploy_changes_nothing') -LogFile (Join-Path $Artifacts 'redeploy.log')
    }
    'artifacts' {
        $paths = Get-StackPaths
        $logs = Join-Path $Artifacts 'host-logs'
        [void][System.IO.Directory]::CreateDirectory($logs)
        if ([System.IO.Directory]::Exists($paths.log_dir)) {
            Copy-Item -Path (Join-Path $paths.log_dir '*') -Destination $logs -Recurse -Force
        }
        $status = Join-Path $Artifacts 'status.json'
        & $paths.cli 'status' '--json' '--config' $paths.config | Out-File -FilePath $status -Encoding utf8
        Get-WinEvent -FilterHashtable @{ LogName = 'Application'; ProviderName = 'ProviderFallback' } -ErrorAction SilentlyContinue |
            Select-Object -Property @('TimeCreated', 'Id', 'LevelDisplayName', 'Message') |
            ConvertTo-Json -Depth 3 | Out-File -FilePath (Join-Path $Artifacts 'event-log.json') -Encoding utf8
    }
}
exit 0
